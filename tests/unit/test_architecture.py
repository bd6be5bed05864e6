"""The house rules the adapters keep: no module reaches into another object's underscore
names, and nothing is built from mixins that restate what they expect of their host."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters" / "auditledger" / "adapters"
PUBLIC_UNDERSCORE = frozenset({"_replace", "_asdict", "_fields", "_mapping", "_make"})
OWN = frozenset({"self", "cls"})


def modules() -> list[Path]:
    return sorted(ADAPTERS.rglob("*.py"))


def is_own(node: ast.expr) -> bool:
    """`self`, `cls` or `super()`: the object's own names."""
    if isinstance(node, ast.Name):
        return node.id in OWN
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def private_reaches(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__") or name in PUBLIC_UNDERSCORE:
            continue
        if not is_own(node.value):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def mixins(tree: ast.AST) -> list[str]:
    return [
        f"line {node.lineno}: class {node.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name.endswith("Mixin")
    ]


def test_the_adapters_are_found() -> None:
    assert ADAPTERS / "ledger.py" in modules()


@pytest.mark.parametrize("module", modules(), ids=lambda p: str(p.relative_to(ADAPTERS)))
def test_no_module_reaches_into_another_objects_underscore_names(module: Path) -> None:
    assert private_reaches(ast.parse(module.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("module", modules(), ids=lambda p: str(p.relative_to(ADAPTERS)))
def test_no_class_is_a_mixin(module: Path) -> None:
    assert mixins(ast.parse(module.read_text(encoding="utf-8"))) == []


def test_the_checks_see_what_they_forbid() -> None:
    tree = ast.parse(
        "class HostMixin:\n"
        "    def f(self, other):\n"
        "        self._mine, super()._base, row._mapping\n"
        "        return other._theirs\n"
    )
    assert private_reaches(tree) == ["line 4: other._theirs"]
    assert mixins(tree) == ["line 1: class HostMixin"]


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize(
    "room", ["calls", "landscape", "tamper", "writing", "storage"], ids=lambda room: room
)
def test_the_rooms_below_the_facade_never_import_it(room: str) -> None:
    for module in sorted((ADAPTERS / room).rglob("*.py")):
        names = imported(ast.parse(module.read_text(encoding="utf-8")))
        assert "auditledger.adapters.ledger" not in names, module
        assert "auditledger.adapters" not in names, module  # the package re-exports Ledger
