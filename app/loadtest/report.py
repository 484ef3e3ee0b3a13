"""The HTML report of a run: one self-contained page, plots as inline SVG.

No script and nothing fetched: the page opens offline, from a CI artifact or an e-mail.
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = ["bar_chart", "html", "line_chart"]

W, H = 720, 260
PAD_L, PAD_R, PAD_T, PAD_B = 60, 110, 20, 36
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def _esc(value: object) -> str:
    return _html.escape(str(value))


def _nice(top: float) -> float:
    if top <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= top:
            return float(step * exp)
    return float(10 * exp)


def _frame(title: str, x_label: str, y_label: str, x_max: float, y_max: float) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
        f'<text x="{W / 2}" y="13" text-anchor="middle" font-weight="bold">{_esc(title)}</text>',
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#333"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#333"/>',
        f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 4}" text-anchor="middle">'
        f"{_esc(x_label)}</text>",
        f'<text x="12" y="{(PAD_T + H - PAD_B) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(PAD_T + H - PAD_B) / 2})">{_esc(y_label)}</text>',
    ]
    for i in range(5):
        y_val = y_max * i / 4
        y = _y(y_val, y_max)
        parts.append(
            f'<line x1="{PAD_L}" y1="{y:.1f}" x2="{W - PAD_R}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end">{y_val:g}</text>'
        )
        x_val = x_max * i / 4
        x = _x(x_val, x_max)
        parts.append(
            f'<text x="{x:.1f}" y="{H - PAD_B + 14}" text-anchor="middle">{x_val:g}</text>'
        )
    return parts


def _x(value: float, x_max: float) -> float:
    return PAD_L + (W - PAD_L - PAD_R) * (value / x_max if x_max else 0)


def _y(value: float, y_max: float) -> float:
    return H - PAD_B - (H - PAD_T - PAD_B) * (value / y_max if y_max else 0)


def line_chart(
    title: str, x_label: str, y_label: str, series: Mapping[str, Sequence[tuple[float, float]]]
) -> str:
    """Lines over a shared x axis; one legend entry per series."""
    points = [p for values in series.values() for p in values]
    if not points:
        return f"<p><em>{_esc(title)}: no data</em></p>"
    x_max = _nice(max(x for x, _ in points))
    y_max = _nice(max(y for _, y in points))
    parts = _frame(title, x_label, y_label, x_max, y_max)
    for i, (name, values) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{_x(x, x_max):.1f},{_y(y, y_max):.1f}" for x, y in values)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        ly = PAD_T + 14 * i + 8
        parts.append(
            f'<rect x="{W - PAD_R + 8}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
            f'<text x="{W - PAD_R + 22}" y="{ly + 1}">{_esc(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, x_label: str, y_label: str, bars: Sequence[tuple[float, float]]) -> str:
    """A histogram: (upper bound, count) bars on a log-scaled x axis."""
    if not bars:
        return f"<p><em>{_esc(title)}: no data</em></p>"
    lows = [max(b[0], 1e-3) for b in bars]
    lo, hi = math.log10(min(lows)), math.log10(max(lows))
    span = max(hi - lo, 1e-9)
    y_max = _nice(max(n for _, n in bars))
    parts = _frame(title, x_label, y_label, 1.0, y_max)
    parts = [p for p in parts if 'text-anchor="middle">' not in p or "font-weight" in p]
    width = max(1.0, (W - PAD_L - PAD_R) / max(len(bars), 1) * 0.8)
    for (value, n), low in zip(bars, lows, strict=True):
        x = _x((math.log10(low) - lo) / span, 1.0)
        y = _y(n, y_max)
        parts.append(
            f'<rect x="{x - width / 2:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{H - PAD_B - y:.1f}" fill="{COLORS[0]}">'
            f"<title>{value:g} ms: {n}</title></rect>"
        )
    for frac in (0, 0.25, 0.5, 0.75, 1):
        label = 10 ** (lo + frac * span)
        parts.append(
            f'<text x="{_x(frac, 1.0):.1f}" y="{H - PAD_B + 14}" text-anchor="middle">'
            f"{label:.3g}</text>"
        )
    parts.append(
        f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 4}" text-anchor="middle">'
        f"{_esc(x_label)} (log scale)</text></svg>"
    )
    return "".join(parts)


def _table(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _summary_row(name: str, s: dict[str, Any]) -> str:
    cells = "".join(f"<td>{s[k]}</td>" for k in ("count", "p50", "p90", "p99", "p99.9", "max"))
    return f"<tr><th>{_esc(name)}</th>{cells}</tr>"


def _latency_charts(result: dict[str, Any], series: list[dict[str, Any]]) -> list[str]:
    charts: list[str] = []
    if any(p["deliveries"] for p in series):
        quantiles = ("p50", "p90", "p99", "max")
        charts.append(
            line_chart(
                "Edit-to-delivery latency per second",
                "seconds",
                "ms",
                {q: [(p["t"], p[q]) for p in series if p["deliveries"]] for q in quantiles},
            )
        )
        charts.append(bar_chart("Latency histogram", "ms", "deliveries", result["histogram_ms"]))
    if any(p["presence"] for p in series):
        keys = ("p50", "p99", "max")
        charts.append(
            line_chart(
                "Presence delivery latency per second",
                "seconds",
                "ms",
                {q: [(p["t"], p[f"presence_{q}"]) for p in series if p["presence"]] for q in keys},
            )
        )
        charts.append(
            bar_chart(
                "Presence latency histogram", "ms", "deliveries", result["presence_histogram_ms"]
            )
        )
    if result["welcome_histogram_ms"]:
        charts.append(
            bar_chart(
                "Welcome after the start (join-storm)",
                "ms",
                "clients",
                result["welcome_histogram_ms"],
            )
        )
    return charts


def _charts(result: dict[str, Any]) -> list[str]:
    """The plots that have data in this run."""
    series = result["series"]
    charts = _latency_charts(result, series)
    if series:
        received = {
            "deliveries": [(p["t"], p["deliveries"]) for p in series],
            "presence": [(p["t"], p["presence"]) for p in series],
        }
        sent = {
            "ops sent": [(p["t"], p["ops"]) for p in series],
            "acks": [(p["t"], p["acks"]) for p in series],
        }
        charts.append(line_chart("Deliveries per second", "seconds", "per second", received))
        charts.append(line_chart("Ops and acks per second", "seconds", "per second", sent))
    server = result["server"]["series"]
    if server:
        pids = sorted({pid for p in server for pid in p["rss_kib"]})
        cpu = {pid: [(p["t"], p["cpu"][pid]) for p in server if pid in p["cpu"]] for pid in pids}
        rss = {
            pid: [(p["t"], p["rss_kib"][pid] / 1024) for p in server if pid in p["rss_kib"]]
            for pid in pids
        }
        charts.append(line_chart("Server CPU (% of one core)", "seconds", "%", cpu))
        charts.append(line_chart("Server RSS", "seconds", "MiB", rss))
    generator = result.get("generator", {}).get("series") or []
    if generator:
        pids = sorted({pid for p in generator for pid in p["cpu"]})
        cpu = {pid: [(p["t"], p["cpu"][pid]) for p in generator if pid in p["cpu"]] for pid in pids}
        charts.append(line_chart("Load generator CPU per client process", "seconds", "%", cpu))
    return charts


def html(result: dict[str, Any]) -> str:
    stats, corr = result["stats"], result["correctness"]
    ok = corr["ok"] and all(b["met"] for b in result["bounds"].values())
    verdict = (
        '<p class="ok">Correctness: OK</p>'
        if corr["ok"]
        else f'<p class="bad">CORRECTNESS CHECK FAILED: {_esc(corr["problems"])}</p>'
        + "".join(f"<li>{_esc(f)}</li>" for f in corr["failures"])
    )
    latencies = (
        ("edit to delivery", stats["latency_ms"]),
        ("ack", stats["ack_ms"]),
        ("presence", stats["presence_ms"]),
        ("connect (handshake)", stats["connect_ms"]),
        ("join (hello to welcome)", stats["join_ms"]),
        ("welcome after the start (join-storm)", stats["welcome_after_start_ms"]),
    )
    lat_table = (
        "<table><tr><th></th><th>count</th><th>p50</th><th>p90</th><th>p99</th>"
        "<th>p99.9</th><th>max</th></tr>"
        + "".join(_summary_row(n, s) for n, s in latencies if s["count"])
        + "</table>"
    )
    charts = _charts(result)
    config = result["config"]
    head = [
        ("scenario", result["scenario"]),
        ("started", result["started_at"]),
        ("target", config["url"]),
        ("knobs", orjson.dumps(config["knobs"]).decode()),
        ("duration / warmup (s)", f"{config['duration_s']} / {config['warmup_s']}"),
        ("client processes", config["processes"]),
        ("machine", orjson.dumps(result["machine"]).decode()),
        ("clients / documents", f"{stats['clients']} / {stats['documents']}"),
        (
            "ops sent / acked",
            f"{stats['ops_sent']} / {stats['ops_acked']} ({stats['ops_per_s']}/s)",
        ),
        ("deliveries", f"{stats['deliveries']} ({stats['deliveries_per_s']}/s counted)"),
        ("errors", orjson.dumps(stats["errors"]).decode()),
        ("bounds", orjson.dumps(result["bounds"]).decode()),
    ]
    steps = ""
    if "max" in result:
        rows = "".join(
            f"<tr><td>{s['rate']}</td><td>{s['acked_per_s']}</td><td>{s['ack_p99_ms']}</td>"
            f"<td>{s['delivery_p99_ms']}</td><td>{_esc(s['errors'])}</td>"
            f"<td>{'yes' if s['ok'] else 'no'}</td></tr>"
            for s in result["max"]["steps"]
        )
        curve = {
            "ack p99": [(s["rate"], s["ack_p99_ms"]) for s in result["max"]["steps"]],
            "delivery p99": [(s["rate"], s["delivery_p99_ms"]) for s in result["max"]["steps"]],
        }
        steps = (
            f"<h2>Steps (bound {result['max']['bound_ms']} ms)</h2><table><tr><th>rate</th>"
            "<th>acked/s</th><th>ack p99</th><th>delivery p99</th><th>errors</th><th>kept</th>"
            f"</tr>{rows}</table>{line_chart('p99 by op rate', 'ops/s', 'ms', curve)}"
            "<p>The rest of this page is the last step's run.</p>"
        )
    title = f"Atelier load test: {result['scenario']} ({'passed' if ok else 'FAILED'})"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{_esc(title)}</title><style>"
        "body{font-family:sans-serif;max-width:780px;margin:1em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;"
        "padding:2px 6px;text-align:left;font-size:13px}.ok{color:#080;font-weight:bold}"
        ".bad{color:#c00;font-weight:bold;font-size:1.2em}svg{margin:.5em 0}"
        "</style></head><body>"
        f"<h1>{_esc(title)}</h1>{verdict}{steps}<h2>Run</h2>{_table(head)}"
        f"<h2>Latencies (ms)</h2>{lat_table}<h2>Plots</h2>{''.join(charts)}"
        "</body></html>\n"
    )
