"""The Lua scripts called directly on a real server: the commit protocol's named slots, repair of
corrupt keys, refused analytics ops, cancels (of_remove) at the edges, GAP and duplicate replies,
the one-database commit without SELECT, and EXPIRE_IF_NONE."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import redis

from smarttrade.errors import DecodeError
from smarttrade.ingest.commit import Commit, Layout, SymbolSlice, build_commit, message_frame
from smarttrade.models import STREAM_FIELDS, TradeMessage, decode, decode_stream_entry
from smarttrade.redis.scripts import COMMIT, EXPIRE_IF_NONE, INGEST_COMMIT, LIB
from smarttrade.symbols import spec_for

SYMBOL = "DOL"
T0 = 1_764_000_000  # an epoch second
SIX_DBS = Layout("0 1 2", 60, 300, 600, 86_400)  # the select plans of Topology.commit_select
ONE_DB = Layout("", 60, 300, 600, 86_400)


def sl(
    prices: list[int], qtys: list[int], sides: list[int], secs: list[int], cancel: list[bool] | None = None
) -> SymbolSlice:
    n = len(prices)
    return SymbolSlice(
        SYMBOL,
        price=np.array(prices, dtype=np.int64),
        qty=np.array(qtys, dtype=np.int64),
        side=np.array(sides, dtype=np.int8),
        side_src=np.zeros(n, dtype=np.uint8),
        time_us=np.array([(T0 + s) * 1_000_000 + 1000 * i for i, s in enumerate(secs)], dtype=np.int64),
        bid=np.zeros(n, dtype=np.int64),
        ask=np.zeros(n, dtype=np.int64),
        cancel=np.array(cancel or [False] * n, dtype=bool),
        ids=[str(i + 1) for i in range(n)],
    )


def commit(s: SymbolSlice, seq: int, layout: Layout = SIX_DBS, ops=()) -> Commit:
    return build_commit(s, spec_for(SYMBOL), "test", seq, seq * 10, layout, ops)


@pytest.fixture
def r(server):
    with redis.Redis(port=server.port) as client:
        yield client


def run(r: redis.Redis, c: Commit):
    return r.eval(INGEST_COMMIT, len(c.keys), *c.keys, *c.args)


def db(server, n: int) -> redis.Redis:
    return redis.Redis(port=server.port, db=n, decode_responses=True)


def test_header_names_every_fixed_slot_before_the_first_call() -> None:
    body = INGEST_COMMIT
    first_call = body.index("_counted_call(")
    named = re.findall(r"^local (\w+) = (KEYS|ARGV)\[(\d+)\]$", body[:first_call], re.M)
    assert [n for n, kind, _ in named if kind == "KEYS"] == list(COMMIT.keys)
    assert [n for n, kind, _ in named if kind == "ARGV"] == list(COMMIT.argv)
    assert [int(i) for _, kind, i in named if kind == "ARGV"] == list(range(1, len(COMMIT.argv) + 1))
    # every named slot is used after the header (no "unused" slots)
    rest = body[first_call:]
    for name in (*COMMIT.keys, *COMMIT.argv):
        assert re.search(rf"\b{name}\b", rest), name
    # and the Python packing refuses a missing or unknown slot
    with pytest.raises(TypeError, match=r"missing .*'stream'"):
        COMMIT.pack_keys(checkpoint="a", last_key="b", calls_key="c")
    with pytest.raises(TypeError, match=r"unknown .*'extra'"):
        COMMIT.pack_keys(checkpoint="a", last_key="b", stream="c", calls_key="d", extra="e")


def test_duplicate_seq_is_skipped_and_a_gap_refused(server, r) -> None:
    first = commit(sl([5234], [2], [1], [0]), 1)
    assert run(r, first) == [1, 1, 0, 0]
    assert run(r, first) == [0, 1, 0, 0]  # the same seq again: applied once
    assert db(server, 2).get("footprint:DOL:5234") == (
        '{"price":5.234,"buy_volume":2,"sell_volume":0,"total_volume":2,"imbalance":1}'
    )
    with pytest.raises(redis.ResponseError, match=r"GAP ingest:checkpoint:test:DOL holds seq 1, got 3"):
        run(r, commit(sl([5234], [1], [1], [1]), 3))
    assert db(server, 0).hget("ingest:checkpoint:test:DOL", "seq") == "1"


def test_corrupt_level_and_bucket_are_repaired(server, r) -> None:
    db(server, 2).set("footprint:DOL:5234", "not json")
    db(server, 2).set("footprint:DOL:5235", '{"price":5.235,"buy_volume":"abc"}')
    db(server, 1).set(f"orderflow:DOL:{T0}", "[1,2")
    reply = run(r, commit(sl([5234, 5235], [2, 3], [1, -1], [0, 0]), 1))
    assert reply == [1, 1, 3, 0]  # three keys replaced
    assert json.loads(db(server, 2).get("footprint:DOL:5234"))["buy_volume"] == 2
    assert json.loads(db(server, 2).get("footprint:DOL:5235"))["sell_volume"] == 3
    bucket = json.loads(db(server, 1).get(f"orderflow:DOL:{T0}"))
    assert [t["volume"] for t in bucket["trades"]] == [2, 3]
    # a level in our own shape and a hand-written one in another key order both add up
    db(server, 2).set("footprint:DOL:5236", '{"sell_volume": 1, "buy_volume": 4}')
    assert run(r, commit(sl([5234, 5236], [1, 1], [1, 1], [1, 1]), 2)) == [1, 2, 0, 0]
    assert json.loads(db(server, 2).get("footprint:DOL:5234"))["buy_volume"] == 3
    assert json.loads(db(server, 2).get("footprint:DOL:5236")) == {
        "price": 5.236,
        "buy_volume": 5,
        "sell_volume": 1,
        "total_volume": 6,
        "imbalance": 0.833333,
    }


def test_an_analytics_op_outside_the_allowed_list_is_refused_before_any_write(server, r) -> None:
    ops = [("FLUSHALL", 0, "calc:DOL:x", []), ("SET", 3, "calc:DOL:rsi", ["1", "EX", "60"])]
    c = commit(sl([5234], [2], [1], [0]), 1, ops=[ops[1], ops[0]])
    with pytest.raises(redis.ResponseError, match="ingest op FLUSHALL is not allowed"):
        run(r, c)
    # nothing written, nothing flushed: only the script-call counter (docs/operations.md)
    assert [db(server, n).dbsize() for n in range(6)] == [1, 0, 0, 0, 0, 0]
    assert db(server, 0).exists("ops:scriptcalls")


def test_bar_footprint_increments_keep_hincrby_semantics(server, r) -> None:
    fp = db(server, 2)
    fp.hset("fpbar:DOL:1m:0", mapping={"b:5234": "7", "s:5234": "9007199254740000", "x": "1"})
    ops = [("HINCRBYEX", 2, "fpbar:DOL:1m:0", [600, "b:5234", 3, "s:5234", 1000, "b:5235", -2])]
    assert run(r, commit(sl([5234], [1], [1], [0]), 1, ops=ops))[0] == 1
    # plain integers via one HMGET/HSET, a sum past 2**53 through Redis's own 64-bit HINCRBY
    assert fp.hgetall("fpbar:DOL:1m:0") == {
        "b:5234": "10",
        "s:5234": "9007199254741000",
        "b:5235": "-2",
        "x": "1",
    }
    assert 0 < fp.ttl("fpbar:DOL:1m:0") <= 600
    fp.hset("fpbar:DOL:1m:0", "b:5234", "1.5")  # HINCRBY refuses a non-integer: so does the commit
    with pytest.raises(redis.ResponseError, match="not an integer"):
        run(r, commit(sl([5234], [1], [1], [1]), 2, ops=[("HINCRBY", 2, "fpbar:DOL:1m:0", ["b:5234", 1])]))
    qty = [("HINCRQTYEX", 2, "fpbar:DOL:1m:60", [600, 2, "b:5234", 150, "s:5234", 5])]
    db(server, 0).hset("ingest:checkpoint:test:DOL", "seq", 2)
    assert run(r, commit(sl([5234], [1], [1], [2]), 3, ops=qty))[0] == 1
    assert run(r, commit(sl([5234], [1], [1], [3]), 4, ops=qty))[0] == 1
    assert fp.hgetall("fpbar:DOL:1m:60") == {"b:5234": "3", "s:5234": "0.1"}


@pytest.mark.parametrize(
    ("kept", "cancelled"),
    [
        ([], [0]),  # the only trade: the bucket and the second's quote go
        ([1], [0]),  # the first of two
        ([0], [1]),  # the last of two
        ([0, 2], [1]),  # one in the middle
    ],
)
def test_cancel_removes_exactly_its_trade(server, r, kept: list[int], cancelled: list[int]) -> None:
    n = len(kept) + len(cancelled)
    prices, qtys = [5230 + i for i in range(n)], [i + 1 for i in range(n)]
    assert run(r, commit(sl(prices, qtys, [1] * n, [0] * n), 1))[0] == 1
    # the cancels: the same trades again, flagged (times as the first commit had them)
    s = sl(prices, qtys, [1] * n, [0] * n, cancel=[i in cancelled for i in range(n)])
    keep = [i for i in range(n) if i not in cancelled]
    for name in ("price", "qty", "side", "side_src", "time_us", "bid", "ask", "cancel"):
        setattr(s, name, getattr(s, name)[cancelled])
    s.ids = [s.ids[i] for i in cancelled]
    assert run(r, commit(s, 2)) == [1, 2, 0, 0]
    raw = db(server, 1).get(f"orderflow:DOL:{T0}")
    quote = db(server, 0).get(f"quote:DOL:{T0}")
    if not keep:
        assert raw is None and quote is None
        return
    assert [t["volume"] for t in json.loads(raw)["trades"]] == [qtys[i] for i in keep]
    assert json.loads(quote)["volume"] == sum(qtys[i] for i in keep)
    # a cancel of a trade no longer there is counted as missed, and changes nothing
    assert run(r, commit(s, 3)) == [1, 3, 0, 1]
    assert db(server, 1).get(f"orderflow:DOL:{T0}") == raw


def test_of_remove_edges(server, r) -> None:
    """of_remove on its own: no match, the only item, first, last, middle."""
    script = LIB + "local v, found = of_remove(ARGV[1], ARGV[2])\nreturn {v, found and 1 or 0}\n"

    def remove(current: str, item: str) -> list:
        return [x.decode() if isinstance(x, bytes) else x for x in r.eval(script, 0, current, item)]

    head = '{"symbol":"DOL","trades":['
    a, b, c = '{"price":1,"volume":1}', '{"price":2,"volume":1}', '{"price":3,"volume":1}'
    assert remove(head + a + "]}", b) == [head + a + "]}", 0]
    assert remove(head + a + "]}", a) == [head + "]}", 1]
    assert remove(head + a + "," + b + "]}", a) == [head + b + "]}", 1]
    assert remove(head + a + "," + b + "]}", b) == [head + a + "]}", 1]
    assert remove(head + a + "," + b + "," + c + "]}", b) == [head + a + "," + c + "]}", 1]
    assert remove(head + a + "," + a + "]}", a) == [head + a + "]}", 1]  # one at a time


def test_one_database_commit_runs_without_select(server, r) -> None:
    c = commit(sl([5234, 5235], [2, 1], [1, -1], [0, 1]), 1, ONE_DB)
    assert c.args[COMMIT.argv.index("dbs")] == ""
    r.config_resetstat()
    assert run(r, c) == [1, 1, 0, 0]
    assert "cmdstat_select" not in r.info("commandstats")
    one = db(server, 0)
    assert sorted(one.keys("*")) == sorted(
        [
            "ingest:checkpoint:test:DOL",
            "lastquote:DOL",
            "stream:trades:DOL",
            "stream:epoch:DOL",
            f"quote:DOL:{T0}",
            f"quote:DOL:{T0 + 1}",
            f"orderflow:DOL:{T0}",
            f"orderflow:DOL:{T0 + 1}",
            "footprint:DOL:5234",
            "footprint:DOL:5235",
            "ops:scriptcalls",
        ]
    )
    # the six-database commit still selects
    r.config_resetstat()
    assert run(r, commit(sl([5234], [1], [1], [2]), 2, SIX_DBS))[0] == 1
    assert r.info("commandstats")["cmdstat_select"]["calls"] >= 3


def test_expire_if_none_never_overrides_a_ttl(server, r) -> None:
    r.set("quote:DOL:1", "{}")
    r.set("quote:DOL:2", "{}", ex=30)
    assert r.eval(EXPIRE_IF_NONE, 1, "quote:DOL:1", 60) == 1
    assert r.eval(EXPIRE_IF_NONE, 1, "quote:DOL:2", 60) == 0
    assert 0 < r.ttl("quote:DOL:1") <= 60 and 0 < r.ttl("quote:DOL:2") <= 30


def test_pubsub_message_and_stream_entry_decode_as_their_contracts(server, r) -> None:
    """The gateway's inputs: what a commit publishes and appends decodes as TradeMessage and
    StreamEntry, with the second's merged quote filled in and the cancelled trades listed."""
    sub = r.pubsub()
    sub.subscribe("trades:DOL")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert run(r, commit(sl([5234, 5235, 5236], [2, 1, 4], [1, -1, 1], [0, 0, 1]), 1))[0] == 1
    s = sl([5235], [1], [-1], [0], cancel=[True])
    s.time_us = s.time_us + 1000  # the second trade of the first commit
    assert run(r, commit(s, 2)) == [1, 2, 0, 0]
    messages = [sub.get_message(timeout=5) for _ in range(2)]
    sub.close()
    first, second = (decode(TradeMessage, m["data"], "message") for m in messages)
    assert (first.symbol, first.seq, first.cancelled) == ("DOL", 1, [])
    assert [t.volume for t in first.trades] == [2, 1, 4]
    assert first.quote is not None and (first.quote.timestamp, first.quote.volume) == (T0 + 1.002, 4)
    assert second.seq == 2 and second.trades == [] and second.quote is None
    assert [(t.price, t.volume, t.side) for t in second.cancelled] == [(5.235, 1, "sell")]
    # each message's offset is its stream entry's id; the epoch is the stream's, made once
    stream = db(server, 1).xrange("stream:trades:DOL")
    assert [first.offset, second.offset] == [entry_id for entry_id, _ in stream]
    epoch = db(server, 1).get("stream:epoch:DOL")
    assert epoch and first.epoch == second.epoch == epoch
    assert 0 < db(server, 1).ttl("stream:epoch:DOL") <= 300
    entries = [decode_stream_entry(f, "stream") for _, f in db(server, 1).xrange("stream:trades:DOL")]
    assert [(e.seq, len(e.trades), e.ids, e.src, len(e.cancelled)) for e in entries] == [
        (1, 3, ["1", "2", "3"], "sss", 0),
        (2, 0, [], "", 1),
    ]
    assert tuple(db(server, 1).xrange("stream:trades:DOL")[0][1]) == STREAM_FIELDS
    # the head and tail spliced around the trades are the contract's, byte for byte
    assert message_frame("DOL", 7, "[]") == (
        '{"symbol":"DOL","seq":7,"quote":null,"trades":',
        ',"cancelled":[],"offset":',
    )
    with pytest.raises(DecodeError, match="missing field 'src'"):
        decode_stream_entry({b"seq": b"1", b"trades": b"[]", b"ids": b"", b"cancelled": b"[]"}, "stream")
