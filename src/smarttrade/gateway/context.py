"""What every part of one gateway process shares: settings, the topology and stores, the token
checker, this gateway's id, and the services its lifespan starts and stops (the fan-out hub, the
alert engine). Built once per process by app.create_app."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from smarttrade.gateway.auth import Tokens
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores import Stores

if TYPE_CHECKING:
    from smarttrade.gateway.hub import Hub


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def new_gateway_id() -> str:
    return "gw-" + secrets.token_hex(4)


@dataclass
class GatewayContext:
    settings: Settings
    topology: Topology
    stores: Stores
    tokens: Tokens
    gateway_id: str = field(default_factory=new_gateway_id)
    hub: Hub | None = None  # the fan-out hub; create_app makes it when not given
