"""``parse_op``: a client's JSON-decoded op -> a typed, validated, normalized ``Op``."""

from __future__ import annotations

from typing import Any, cast

import msgspec

from app.domain.schema import (
    PROPS_TYPES,
    REQUIRED_PROPS,
    Batch,
    ElementAdd,
    ElementSet,
    ElementUpdate,
    LayerUpdate,
    Op,
    Title,
)
from app.domain.stroke import normalize_points
from app.errors import Invalid

__all__ = ["create_op", "parse_op", "props_dict"]

_UNSET = msgspec.UNSET


def parse_op(raw: object) -> Op:
    """Validate ``raw`` (the ``op`` of a client message) and return a typed op.

    Raises ``Invalid`` naming the field for any violation of PROTOCOL.md sections 2-3.
    Stroke points come back normalized (``stroke.normalize_points``).
    """
    try:
        op = msgspec.convert({"op": raw}, _Envelope, strict=True).op
    except msgspec.ValidationError as exc:
        text = str(exc).replace(" - at `$.op`", "").replace(" - at `$.op", " - at `$")
        raise Invalid(_message(text, "$")) from None
    return cast(Op, _finish(op, "$"))


class _Envelope(msgspec.Struct):
    # msgspec caches the decoding plan of a Struct type, not of a bare Union: wrapping
    # the union in a Struct makes converting an op ~8x faster (7.7 -> 0.9 µs).
    op: Op


def create_op(title: str) -> dict[str, Any]:
    """The event op of document creation (version 1)."""
    try:
        title = msgspec.convert(title, Title, strict=True)
    except msgspec.ValidationError as exc:
        raise Invalid(_message(str(exc), "title").replace("invalid op", "invalid title")) from None
    return {"kind": "doc.create", "title": title}


def _finish(op: Any, path: str) -> Any:
    """Second pass for what the types cannot say: props per shape, non-empty sets."""
    kind = type(op)
    if kind is ElementAdd:
        props = _convert(op.props, PROPS_TYPES[op.shape], f"{path}.props", op.shape)
        return msgspec.structs.replace(op, props=props_dict(props))
    if kind is ElementUpdate:
        for name in REQUIRED_PROPS:
            if name in op.set and op.set[name] is None:
                raise Invalid(
                    f"invalid op: `{name}` is a required prop and cannot be removed (null)"
                    f" - at `{path}.set.{name}`"
                )
        values = props_dict(_convert(op.set, ElementSet, f"{path}.set"), keep_none=True)
        if not values:
            raise Invalid(f"invalid op: `set` names no prop - at `{path}.set`")
        return msgspec.structs.replace(op, set=values)
    if kind is LayerUpdate:
        if not props_dict(op.set):
            raise Invalid(f"invalid op: `set` names no field - at `{path}.set`")
        return op
    if kind is Batch:
        ops = [_finish(sub, f"{path}.ops[{i}]") for i, sub in enumerate(op.ops)]
        return msgspec.structs.replace(op, ops=ops)
    return op


def _convert(value: Any, type_: Any, path: str, shape: str | None = None) -> Any:
    try:
        return msgspec.convert(value, type_, strict=True)
    except msgspec.ValidationError as exc:
        text = _message(str(exc), path)
        if shape is not None and "Unknown prop" in text:
            text += f" (not a prop of shape {shape!r})"
        raise Invalid(text) from None


def props_dict(struct: Any, *, keep_none: bool = False) -> dict[str, Any]:
    """The fields of a props/set Struct that were given, as a JSON-able dict (stroke
    points normalized, as lists)."""
    out: dict[str, Any] = {}
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if value is _UNSET or (value is None and not keep_none):
            continue
        out[name] = normalize_points(value) if name == "points" else value
    return out


def _message(text: str, path: str) -> str:
    """msgspec's message, with its ``$`` path re-rooted at ``path``."""
    if text.startswith("Object contains unknown field") and path.endswith((".props", ".set")):
        text = text.replace("Object contains unknown field", "Unknown prop", 1)
    if " - at `$" in text:
        text = text.replace(" - at `$", " - at `" + path, 1)
    elif path != "$":
        text = f"{text} - at `{path}`"
    if "Expected `float` >= -10000000.0" in text or "Expected `float` <= 10000000.0" in text:
        text += " (numbers must be finite and within +/-1e7)"
    return "invalid op: " + text
