"""Imports point down the data flow (DESIGN.md §10): contracts <- redis/feeds <- stores <- analytics
<- ingest <- ops <- runtime/demo <- cli. Parsed with ast, so lazy and TYPE_CHECKING imports count."""

from __future__ import annotations

import ast
from pathlib import Path

import smarttrade

PACKAGE = Path(smarttrade.__file__).parent

# Lower ranks are imported by higher ones, never the other way.
RANK = {
    **dict.fromkeys(("", "errors", "stopping", "symbols", "timeframes", "keyspace", "models", "settings"), 0),
    **dict.fromkeys(("redis", "feeds"), 1),
    "stores": 2,
    "analytics": 3,
    "ingest": 4,
    "ops": 5,
    "runtime": 6,
    "gateway": 7,
    "demo": 8,
    "cli": 9,
    "__main__": 10,
}
# Imports the ranks allow but the design does not: (importer area, imported area, except module).
FORBIDDEN = [
    ("analytics", "stores", None),  # views read through the topology's clients
    ("analytics", "feeds", None),  # a calendar is not a feed's
    ("redis", "settings", "smarttrade.redis.topology"),  # only the seam reads settings
]


def area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(root: Path) -> list[tuple[str, str]]:
    """(importer, imported) for every smarttrade import under ``root`` (the package folder)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}: relative import"
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            out.extend((module, name) for name in names if name.split(".")[0] == "smarttrade")
    return out


def violations(root: Path) -> list[str]:
    bad = []
    for importer, imported in imports(root):
        src, dst = area(importer), area(imported)
        if src == dst:
            continue
        if src not in RANK or dst not in RANK:
            missing = src if src not in RANK else dst
            bad.append(f"{importer} -> {imported}: {missing!r} has no rank in this test")
            continue
        if RANK[dst] > RANK[src] or (RANK[dst] == RANK[src] and RANK[src] > 0):
            bad.append(f"{importer} -> {imported}: points up ({src} {RANK[src]}, {dst} {RANK[dst]})")
        for a, b, allowed in FORBIDDEN:
            if (src, dst) == (a, b) and importer != allowed:
                bad.append(f"{importer} -> {imported}: {a} must not import {b}")
    return bad


def test_the_checker_sees_imports() -> None:
    found = imports(PACKAGE)
    assert ("smarttrade.stores.base", "smarttrade.redis.topology") in found
    assert ("smarttrade.cli.data", "smarttrade.analytics.views") in found  # a lazy import
    assert len({area(m) for m, _ in found}) >= 10


def test_imports_point_down() -> None:
    assert violations(PACKAGE) == []
