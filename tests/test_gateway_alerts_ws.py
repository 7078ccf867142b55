"""Price alerts end to end: a rule written through the API fires on a real ingest, and the fired
record reaches every socket of its user through the gateway's hub (two tabs), once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from smarttrade.redis.embedded import EmbeddedRedis
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores
from smarttrade.symbols import spec_for
from tests.test_gateway_ws import Gateway, drain, feed, gateway, stream_ids, subscribe  # noqa: F401


@pytest.mark.one_binary  # the gateway's delivery, not the server's version
async def test_a_fired_alert_reaches_every_socket_of_its_user_once(
    gateway: Gateway,  # noqa: F811 - the fixture
    server: EmbeddedRedis,
    pools: Topology,
    settings: Settings,
    stores: Stores,
    tmp_path: Path,
) -> None:
    await feed(pools, settings, tmp_path, 400, seed=1)
    last = await stores.quotes.latest("WIN")
    assert last is not None
    # at or above a price ten ticks under the last trade: armed now, it fires on the next commit
    price = last.price - 10 * float(spec_for("WIN").tick)
    headers = {"Authorization": f"Bearer {gateway.tokens.create('bob')}"}
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", headers=headers) as http,
        connect(gateway.url("bob")) as tab1,
        connect(gateway.url("bob")) as tab2,
        connect(gateway.url("carol")) as other,
    ):
        for ws in (tab1, tab2, other):
            await subscribe(ws, ["WIN"], ["alerts"])
        put = await http.put("/api/me/alerts/WIN", json={"price": price, "type": "above"})
        assert put.status_code == 200, put.text
        await asyncio.sleep(0.3)  # armed strictly before the next commit (documented in docs/alerts.md)
        await feed(pools, settings, tmp_path, 400, seed=2)
        got = [[f for f in await drain(ws, quiet=1.5) if f["type"] == "alert"] for ws in (tab1, tab2, other)]
        fired = (await http.get("/api/me/alerts/fired")).json()["fired"]
        state = (await http.get("/api/me/alerts")).json()["alerts"]
    assert len(got[0]) == len(got[1]) == 1 and got[2] == []  # both of bob's tabs, once; not carol
    frame = got[0][0]
    assert got[1][0] == frame
    record = frame["alert"]
    assert (record["user"], record["symbol"], record["type"]) == ("bob", "WIN", "above")
    assert record["trade_price"] >= price and record["offset"] in stream_ids(server, "WIN")
    assert len(fired) == 1 and fired[0]["offset"] == record["offset"]
    assert [a["state"] for a in state if a["symbol"] == "WIN"] == ["fired"]  # once: disarmed
