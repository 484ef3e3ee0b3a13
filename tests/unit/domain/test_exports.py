"""The domain's public surface, and its purity (STYLE.md habit 9; DESIGN.md I6)."""

from __future__ import annotations

import ast
import pathlib

import app.domain

EXPECTED = {
    # the API the command handler is written against
    "Role",
    "Element",
    "Layer",
    "Document",
    "parse_op",
    "Decision",
    "WriteModel",
    "create_op",
    "decide",
    "decide_restore",
    "evolve",
    "apply",
    "apply_event",
    "replay",
    "state_to_json",
    "state_from_json",
    "MODEL_SCHEMA",
    "model_to_json",
    "model_from_json",
    "diff",
    "can_read",
    "can_write",
    "can_manage",
    "valid_id",
    "valid_user",
    # the typed ops parse_op returns
    "Op",
    "PrimitiveOp",
    "DocRename",
    "LayerAdd",
    "LayerUpdate",
    "LayerMove",
    "LayerRemove",
    "ElementAdd",
    "ElementUpdate",
    "ElementMove",
    "ElementRemove",
    "Batch",
    "Undo",
    "Redo",
}

ALLOWED_TOP_LEVEL = {
    "__future__",
    "bisect",
    "collections",
    "dataclasses",
    "itertools",
    "math",
    "msgspec",
    "re",
    "typing",
    "app",
}

DOMAIN = pathlib.Path(app.domain.__file__).parent


def test_all_is_the_expected_api() -> None:
    assert set(app.domain.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(app.domain, name), name


def test_every_module_declares_all() -> None:
    for path in sorted(DOMAIN.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        assert "__all__" in names, path.name


def test_domain_imports_only_pure_modules() -> None:
    for path in sorted(DOMAIN.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert top in ALLOWED_TOP_LEVEL, f"{path.name} imports {mod}"
                if top == "app":
                    assert mod == "app.errors" or mod.startswith("app.domain"), mod
