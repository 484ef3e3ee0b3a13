"""Declarative op and prop schemas (PROTOCOL.md sections 2 and 3), as msgspec Structs.

Every limit of the protocol is a ``msgspec.Meta`` constraint on a type, and every
Struct forbids unknown fields, so ``msgspec.convert(raw, Op, strict=True)`` rejects
unknown kinds and fields, wrong types, bools where numbers are expected, NaN and
infinity (they fail the +/-1e7 range), out-of-range numbers, bad ids and bad
colours, each with a message that names the field. What the types cannot say
(props depend on the shape; stroke points are normalized) ``parse`` adds.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from app.domain.ids import ID_PATTERN

__all__ = [
    "PROPS_TYPES",
    "REQUIRED_PROPS",
    "SHAPES",
    "SHAPE_PROPS",
    "Batch",
    "DocRename",
    "ElementAdd",
    "ElementMove",
    "ElementRemove",
    "ElementSet",
    "ElementUpdate",
    "LayerAdd",
    "LayerMove",
    "LayerRemove",
    "LayerSet",
    "LayerUpdate",
    "Op",
    "PrimitiveOp",
    "Redo",
    "Title",
    "Undo",
]

# --- value types ------------------------------------------------------------------

Num = Annotated[float, Meta(ge=-1e7, le=1e7)]
Unit = Annotated[float, Meta(ge=0.0, le=1.0)]  # opacity, pressure
Extent = Annotated[float, Meta(ge=0.0, le=1e7)]  # w, h
Width = Annotated[float, Meta(ge=0.0, le=1000.0)]
Size = Annotated[float, Meta(ge=1.0, le=1000.0)]
Colour = Annotated[str, Meta(pattern=r"\A#[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?\Z")]
Asset = Annotated[str, Meta(pattern=r"\A[0-9a-f]{64}\Z")]
Text = Annotated[str, Meta(max_length=10_000)]
# No NUL: PostgreSQL text (the documents and catalog titles) cannot hold one.
Title = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"\A[^\x00]*\Z")]
Id = Annotated[str, Meta(pattern=ID_PATTERN)]
Index = Annotated[int, Meta(ge=0)]
Point = tuple[Num, Num, Unit]
Points = Annotated[list[Point], Meta(min_length=1, max_length=10_000)]
Shape = Literal["rect", "ellipse", "line", "text", "stroke", "image"]

SHAPES: Final = ("rect", "ellipse", "line", "text", "stroke", "image")

# --- props per shape ----------------------------------------------------------------


class _Props(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Props every shape has (all optional)."""

    x: Num | UnsetType = UNSET
    y: Num | UnsetType = UNSET
    rotation: Num | UnsetType = UNSET
    opacity: Unit | UnsetType = UNSET
    color: Colour | UnsetType = UNSET
    fill: Colour | UnsetType = UNSET
    width: Width | UnsetType = UNSET


class RectProps(_Props, frozen=True):
    w: Extent | UnsetType = UNSET
    h: Extent | UnsetType = UNSET


class EllipseProps(RectProps, frozen=True):
    pass


class LineProps(_Props, frozen=True):
    x2: Num | UnsetType = UNSET
    y2: Num | UnsetType = UNSET


class TextProps(_Props, frozen=True):
    text: Text
    size: Size | UnsetType = UNSET


class StrokeProps(_Props, frozen=True):
    points: Points


class ImageProps(_Props, frozen=True):
    asset: Asset
    w: Extent | UnsetType = UNSET
    h: Extent | UnsetType = UNSET


PROPS_TYPES: Final[dict[str, type[_Props]]] = {
    "rect": RectProps,
    "ellipse": EllipseProps,
    "line": LineProps,
    "text": TextProps,
    "stroke": StrokeProps,
    "image": ImageProps,
}

SHAPE_PROPS: Final[dict[str, frozenset[str]]] = {
    shape: frozenset(t.__struct_fields__) for shape, t in PROPS_TYPES.items()
}

REQUIRED_PROPS: Final = frozenset({"text", "points", "asset"})


class ElementSet(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``element.update``'s ``set``: any prop of any shape; ``null`` removes an optional
    prop. The required ones (text, points, asset) cannot be removed, so no ``None``."""

    x: Num | UnsetType | None = UNSET
    y: Num | UnsetType | None = UNSET
    rotation: Num | UnsetType | None = UNSET
    opacity: Unit | UnsetType | None = UNSET
    color: Colour | UnsetType | None = UNSET
    fill: Colour | UnsetType | None = UNSET
    width: Width | UnsetType | None = UNSET
    w: Extent | UnsetType | None = UNSET
    h: Extent | UnsetType | None = UNSET
    x2: Num | UnsetType | None = UNSET
    y2: Num | UnsetType | None = UNSET
    size: Size | UnsetType | None = UNSET
    text: Text | UnsetType = UNSET
    points: Points | UnsetType = UNSET
    asset: Asset | UnsetType = UNSET


class LayerSet(Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    name: Title | UnsetType = UNSET
    visible: bool | UnsetType = UNSET
    locked: bool | UnsetType = UNSET
    opacity: Unit | UnsetType = UNSET


# --- ops --------------------------------------------------------------------------


class _Op(Struct, tag_field="kind", forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


class DocRename(_Op, tag="doc.rename", frozen=True):
    title: Title


class LayerAdd(_Op, tag="layer.add", frozen=True):
    layer: Id
    name: Title
    index: Index | UnsetType = UNSET
    visible: bool = True
    locked: bool = False
    opacity: Unit = 1.0


class LayerUpdate(_Op, tag="layer.update", frozen=True):
    layer: Id
    set: LayerSet


class LayerMove(_Op, tag="layer.move", frozen=True):
    layer: Id
    index: Index


class LayerRemove(_Op, tag="layer.remove", frozen=True):
    layer: Id


class ElementAdd(_Op, tag="element.add", frozen=True):
    """``props`` is validated against ``shape`` and normalized by ``parse_op``."""

    element: Id
    layer: Id
    shape: Shape
    props: dict[str, Any]
    index: Index | UnsetType = UNSET


class ElementUpdate(_Op, tag="element.update", frozen=True):
    """``set`` is validated (as ``ElementSet``) and normalized by ``parse_op``; ``None``
    values remove a prop. Whether each prop fits the element's shape is checked by
    ``decide``, the only place that knows the shape."""

    element: Id
    set: dict[str, Any]


class ElementMove(_Op, tag="element.move", frozen=True):
    element: Id
    layer: Id | UnsetType = UNSET
    index: Index | UnsetType = UNSET


class ElementRemove(_Op, tag="element.remove", frozen=True):
    element: Id


PrimitiveOp = (
    DocRename
    | LayerAdd
    | LayerUpdate
    | LayerMove
    | LayerRemove
    | ElementAdd
    | ElementUpdate
    | ElementMove
    | ElementRemove
)


class Batch(_Op, tag="batch", frozen=True):
    # Only primitive ops: a nested batch, undo or redo fails the tag check.
    ops: Annotated[list[PrimitiveOp], Meta(min_length=1, max_length=100)]


class Undo(_Op, tag="undo", frozen=True):
    pass


class Redo(_Op, tag="redo", frozen=True):
    pass


Op = PrimitiveOp | Batch | Undo | Redo
