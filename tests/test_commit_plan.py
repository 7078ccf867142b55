"""Issue 10 item 1: the commit's databases come from the topology seam as an opaque plan; nothing
under ingest/ asks for or compares a database number."""

from __future__ import annotations

import ast
from pathlib import Path

import smarttrade
from smarttrade.keyspace import Store
from smarttrade.redis.topology import Topology
from tests.conftest import settings_for

URL = "redis://127.0.0.1:1"  # never connected: the plan is known from settings alone


def plan(**dbs: int) -> str:
    return Topology.standalone(URL, settings_for(URL, **dbs), 4).commit_select()


def test_select_plan_names_the_three_stores_or_nothing_on_one_database() -> None:
    assert plan() == "0 1 2"  # the contract's six databases
    assert plan(**{f"redis_db_{s.value}": 0 for s in Store}) == ""  # one database: no SELECT
    # the commit's own stores together, but an analytics op's store (calc) apart: SELECT it is
    assert plan(redis_db_orderflow=0, redis_db_footprint=0, redis_db_calc=3) == "0 0 0"
    # sessions and configs are no part of the commit: they may sit anywhere
    one = {f"redis_db_{s.value}": 0 for s in (Store.QUOTES, Store.ORDERFLOW, Store.FOOTPRINT, Store.CALC)}
    assert plan(**one, redis_db_sessions=4) == ""


def test_ingest_never_reads_a_database_number() -> None:
    ingest = Path(smarttrade.__file__).parent / "ingest"
    found = []
    for path in sorted(ingest.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("db", "dbs", "placement", "one_db"):
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert found == []
