"""The import rules of pyproject.toml's [tool.importlinter], checked with ``ast`` too.

``make check`` runs lint-imports, which also follows indirect imports; this test reads
the same contracts and checks every direct import (lazy ones inside functions
included), so that ``make test-unit`` catches a layer violation in a second. It also
checks the rule no tool enforces: only ``app/config.py`` (and ``app/cli.py``, which
hands ``os.environ`` to it) read the environment.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]
ENV_READERS = {"app.config", "app.cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(APP.rglob("*.py"))}


def imports(module: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import statement in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:  # `from app import config` imports app.config
                if f"{base}.{alias.name}" in MODULES:
                    yield node.lineno, f"{base}.{alias.name}"


def layers() -> list[list[str]]:
    (contract,) = [c for c in CONTRACTS if c["type"] == "layers"]
    return [[name.strip().strip("()") for name in layer.split("|")] for layer in contract["layers"]]


def locate(module: str, table: list[list[str]]) -> tuple[int, str] | None:
    """(layer index, sibling) that ``module`` belongs to, if any."""
    for index, siblings in enumerate(table):
        for sibling in siblings:
            if module == sibling or module.startswith(sibling + "."):
                return index, sibling
    return None


def test_the_contracts_are_there() -> None:
    assert {c["type"] for c in CONTRACTS} >= {"layers", "forbidden"}
    assert layers()[0] == ["app.cli"]
    assert layers()[-1] == ["app.errors"]


def layer_violations(edges: Iterable[tuple[str, int, str]], table: list[list[str]]) -> list[str]:
    """The (importer, line, imported) edges that point up the layers or across siblings."""
    wrong = []
    for module, line, target in edges:
        here, there = locate(module, table), locate(target, table)
        if here is None or there is None or there[1] == here[1]:
            continue
        if there[0] <= here[0]:
            wrong.append(f"{module}:{line} imports {target} ({here[1]} -> {there[1]})")
    return wrong


def test_each_import_points_down_the_layers() -> None:
    edges = [(module, line, target) for module in MODULES for line, target in imports(module)]
    wrong = layer_violations(edges, layers())
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_checker_sees_a_violation() -> None:
    # Guard the guard: a lower layer importing a higher one, or a sibling, is reported.
    edges = [
        ("app.store.postgres", 1, "app.gateway.app"),  # up
        ("app.tokens", 2, "app.domain.ids"),  # across independent siblings
        ("app.gateway.app", 3, "app.store.ports"),  # down: fine
        ("app.store.postgres", 4, "app.store.ports"),  # within a layer: fine
        ("app.cli", 5, "app.ops.dev"),  # down: fine
    ]
    wrong = layer_violations(edges, layers())
    assert [line.split(" ")[0] for line in wrong] == ["app.store.postgres:1", "app.tokens:2"]


@pytest.mark.parametrize(
    "contract", [c for c in CONTRACTS if c["type"] == "forbidden"], ids=lambda c: c["name"]
)
def test_forbidden_imports(contract: dict[str, list[str]]) -> None:
    forbidden = contract["forbidden_modules"]
    wrong = []
    for module in MODULES:
        if not any(module == s or module.startswith(s + ".") for s in contract["source_modules"]):
            continue
        for line, target in imports(module):
            if any(target == f or target.startswith(f + ".") for f in forbidden):
                wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, f"{contract['name']}:\n" + "\n".join(wrong)


def test_only_config_reads_the_environment() -> None:
    wrong = []
    for module, path in MODULES.items():
        if module in ENV_READERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}:
                wrong.append(f"{module}:{node.lineno} uses os.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "os":
                names = {alias.name for alias in node.names}
                if names & {"environ", "getenv", "environb"}:
                    wrong.append(f"{module}:{node.lineno} imports {sorted(names)} from os")
    assert not wrong, "only app.config reads the environment:\n" + "\n".join(wrong)
