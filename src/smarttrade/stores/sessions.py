"""WebSocket sessions (db 4): one key per user, TTL refreshed by activity.

Read-modify-write (subscribe/unsubscribe) runs as a WATCH/MULTI transaction so two sockets of one
user never overwrite each other's change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import msgspec
from redis.asyncio.client import Pipeline

from smarttrade.keyspace import SPECS, Store, session_key
from smarttrade.models import Session, encode
from smarttrade.stores.base import BaseStore
from smarttrade.stores.configs import check_user
from smarttrade.symbols import check_symbol


class SessionStore(BaseStore):
    spec = SPECS[Store.SESSIONS]

    async def open(self, user_id: str, socket_id: str, subscriptions: Iterable[str] = ()) -> Session:
        check_user(user_id)
        subs = list(dict.fromkeys(check_symbol(s) for s in subscriptions))
        session = Session(user_id=user_id, socket_id=socket_id, connected_at=time.time(), subscriptions=subs)
        session = self.checked(session, session_key(user_id))
        await self.put_raw(session_key(user_id), encode(session))
        return session

    def _read(self, raw: bytes, key: str, user_id: str) -> Session:
        return self.decode_filled(Session, raw, key, user_id=user_id)

    async def get(self, user_id: str) -> Session | None:
        key = session_key(check_user(user_id))
        raw = await self.get_raw(key)
        return None if raw is None else self._read(raw, key, user_id)

    async def touch(self, user_id: str) -> bool:
        """Refresh the TTL; False when the session no longer exists."""
        with self.guard():
            return bool(await self.redis.expire(session_key(check_user(user_id)), self.ttl))

    async def close(self, user_id: str) -> bool:
        return await self.delete(session_key(check_user(user_id)))

    async def subscribe(self, user_id: str, symbols: Iterable[str]) -> Session | None:
        add = [check_symbol(s) for s in symbols]
        return await self._update(user_id, lambda subs: list(dict.fromkeys([*subs, *add])))

    async def unsubscribe(self, user_id: str, symbols: Iterable[str]) -> Session | None:
        drop = {check_symbol(s) for s in symbols}
        return await self._update(user_id, lambda subs: [s for s in subs if s not in drop])

    async def _update(self, user_id: str, change: Callable[[list[str]], list[str]]) -> Session | None:
        key = session_key(check_user(user_id))
        result: list[Session | None] = [None]

        async def step(pipe: Pipeline) -> None:
            raw = await pipe.get(key)
            if raw is None:
                result[0] = None
                return
            current = self._read(raw, key, user_id)
            updated = msgspec.structs.replace(current, subscriptions=change(list(current.subscriptions)))
            updated = self.checked(updated, key)
            pipe.multi()
            pipe.set(key, encode(updated), ex=self.ttl)
            result[0] = updated

        with self.guard():
            await self.redis.transaction(step, key)
        return result[0]
