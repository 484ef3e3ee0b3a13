"""The checks after a chaos run, against the store itself (DESIGN.md I1..I6).

- I1, I3: every acknowledged op is stored exactly once, at the version of its ack
  (events by op id); no op id is stored twice; no id was acknowledged with two versions.
- I2: each document's versions are 1..n, no gap, and ``documents.v`` is n.
- I4: every client converged: connected, at the document's last version, nothing
  missed or doubled on the way, its folded elements equal the server's state.
- I5, I6: ``app.views.verify`` (what ``python -m app verify`` runs).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from app.chaos.clients import Ledger, WsClient
from app.loadtest.client import elements_of
from app.views.verify import verify

__all__ = ["Check", "check_clients", "check_ops", "check_versions", "check_views"]


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    figure: str
    details: list[str] = field(default_factory=list)


async def check_ops(conn: asyncpg.Connection, ledger: Ledger) -> tuple[Check, dict[str, int]]:
    """I1 and I3; the counts: acked, lost, duplicates, wrong_v, ack_mismatch."""
    rows = await conn.fetch(
        "SELECT doc_id, actor, op_id, v FROM events WHERE op_id IS NOT NULL ORDER BY v"
    )
    stored: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for row in rows:
        stored[(row["doc_id"], row["actor"], row["op_id"])].append(int(row["v"]))
    missing = [key for key in ledger.acked if key not in stored]
    duplicates = [(key, vs) for key, vs in stored.items() if len(vs) > 1]
    wrong = [
        (key, v, stored[key][0])
        for key, v in ledger.acked.items()
        if key in stored and stored[key][0] != v
    ]
    details = [f"lost: {d}/{u}/{i} acked at v{ledger.acked[(d, u, i)]}" for d, u, i in missing]
    details += [f"duplicate: {d}/{u}/{i} stored at {vs}" for (d, u, i), vs in duplicates]
    details += [f"wrong v: {d}/{u}/{i} acked v{a}, stored v{s}" for (d, u, i), a, s in wrong]
    details += [
        f"two acks: {d}/{u}/{i} acked v{a} then v{b}" for d, u, i, a, b in ledger.mismatched
    ]
    counts = {
        "acked": len(ledger.acked),
        "lost": len(missing),
        "duplicates": len(duplicates),
        "wrong_v": len(wrong),
        "ack_mismatch": len(ledger.mismatched),
    }
    ok = not details
    figure = (
        f"{counts['acked']} acked ops: {counts['lost']} lost, {counts['duplicates']} stored"
        f" twice, {counts['wrong_v']} at another v, {counts['ack_mismatch']} acked twice"
        " differently"
    )
    return Check("I1/I3 acked ops stored exactly once", ok, figure, details[:20]), counts


async def check_versions(conn: asyncpg.Connection) -> tuple[Check, dict[str, int]]:
    """I2; the final version of each document."""
    rows = await conn.fetch(
        "SELECT d.id, d.v, count(e.v) AS n, coalesce(min(e.v), 0) AS lo,"
        " coalesce(max(e.v), 0) AS hi"
        " FROM documents d LEFT JOIN events e ON e.doc_id = d.id GROUP BY d.id, d.v"
    )
    details = [
        f"{r['id']}: {r['n']} events, v {r['lo']}..{r['hi']}, documents.v {r['v']}"
        for r in rows
        if not (r["n"] == r["hi"] == r["v"] and (r["lo"] == 1 or r["n"] == 0))
    ]
    versions = {str(r["id"]): int(r["v"]) for r in rows}
    figure = f"{len(rows)} documents, {sum(versions.values())} versions, {len(details)} with a gap"
    return Check("I2 versions 1..n, no gap", not details, figure, details[:20]), versions


def check_clients(
    clients: list[WsClient], states: dict[str, dict[str, Any]]
) -> tuple[Check, dict[str, int]]:
    """I4: ``states`` is each document's ``GET /api/documents/{id}`` answer at its last v."""
    details: list[str] = []
    not_converged = 0
    delivery = 0
    for c in clients:
        answer = states.get(c.doc)
        why = []
        if answer is None:
            why.append("no server state")
        else:
            if not c.ready.is_set():
                why.append("not connected")
            if c.last_v != answer["v"]:
                why.append(f"at v{c.last_v}, server at v{answer['v']}")
            elif c.foldable and c.elements != elements_of(answer["state"]):
                why.append("elements differ from the server's state")
        if why:
            not_converged += 1
            details.append(f"{c.name} ({c.doc}): {', '.join(why)}")
        bad = c.gaps + c.dups + c.welcome_mismatch
        if bad:
            delivery += 1
            details.append(
                f"{c.name} ({c.doc}): {c.gaps} versions missed, {c.dups} doubled or out of"
                f" order, {c.welcome_mismatch} resume welcomes off their last event"
            )
    folded = sum(1 for c in clients if c.foldable)
    counts = {"clients": len(clients), "not_converged": not_converged, "delivery": delivery}
    figure = (
        f"{len(clients)} clients ({folded} compared element by element): {not_converged} not"
        f" converged, {delivery} with a missed or doubled version"
    )
    ok = not details
    return Check("I4 clients converged, each version once", ok, figure, details[:20]), counts


async def check_views(pool: asyncpg.Pool, undo_depth: int) -> Check:
    """I2, I5, I6 as ``python -m app verify`` checks them."""
    report = await verify(pool, limit=5, undo_depth=undo_depth)
    lines = report.lines()
    return Check(
        "I5/I6 verify (views, replay)", report.ok, lines[-1], lines[:-1] if not report.ok else []
    )
