"""Two writers applying footprint deltas to the same levels at the same time lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from smarttrade.stores import Stores

ROUNDS = 300
LEVELS = [5234000 + 500 * i for i in range(10)]

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from smarttrade.redis.topology import Topology
    from smarttrade.settings import Settings
    from smarttrade.stores import Stores

    async def main(url, rounds, levels):
        settings = Settings(_env_file=None, redis_url=url)
        pools = Topology.standalone(url, settings, 8)
        stores = Stores(pools, settings)
        for _ in range(rounds):
            await stores.footprint.apply("DOL", {lv: (1, 2) for lv in levels})
        await pools.aclose()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")]))
    """
)


async def test_two_processes_lose_no_update(server, stores: Stores) -> None:
    args = [sys.executable, "-c", WRITER, server.url, str(ROUNDS), ",".join(map(str, LEVELS))]
    env = {**os.environ}
    writers = [subprocess.Popen(args, env=env) for _ in range(2)]
    # a third writer in this process, interleaving with both
    for _ in range(ROUNDS):
        await stores.footprint.apply("DOL", {lv: (1, 2) for lv in LEVELS})
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    ladder = dict(await stores.footprint.ladder("DOL"))
    assert sorted(ladder) == LEVELS
    for level in LEVELS:
        fp = ladder[level]
        assert (fp.buy_volume, fp.sell_volume, fp.total_volume) == (3 * ROUNDS, 6 * ROUNDS, 9 * ROUNDS)
