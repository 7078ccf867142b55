"""The auth matrix: every endpoint x (no token, bad, expired, another user's, own, admin), over a
real uvicorn and Redis, by header and by ?token=. Plus the token helpers."""

from __future__ import annotations

import time

import jwt
import pytest
from fastapi.routing import APIRoute

from smarttrade.gateway.auth import ALGORITHM, ISSUER, AuthError, Tokens, parse_ttl
from tests.test_gateway_api import SECRET, Served, gw  # noqa: F401 - the served-gateway fixture

# (method, path, kind): public (no token needed), user (any valid token), own (the path's user
# or an admin), admin (an admin token only). The path's user is alice.
ENDPOINTS = [
    ("GET", "/healthz", "public"),
    ("GET", "/metrics", "public"),
    ("GET", "/", "public"),
    ("GET", "/openapi.json", "public"),
    ("GET", "/api/quotes?symbols=WIN,DOL", "user"),
    ("GET", "/api/quotes/WIN", "user"),
    ("GET", "/api/quotes/WIN/history", "user"),
    ("GET", "/api/trades/WIN", "user"),
    ("GET", "/api/footprint/WIN", "user"),
    ("GET", "/api/bars/WIN", "user"),
    ("GET", "/api/indicators/WIN", "user"),
    ("GET", "/api/me/settings", "user"),
    ("GET", "/api/me/settings/theme", "user"),
    ("PUT", "/api/me/settings/theme", "user"),
    ("DELETE", "/api/me/settings/theme", "user"),
    ("GET", "/api/me/session", "user"),
    ("GET", "/api/users/alice/session", "own"),
    ("DELETE", "/api/users/alice/session", "admin"),
    ("GET", "/api/ops/status", "admin"),
    ("GET", "/api/me/alerts", "user"),
    ("GET", "/api/me/alerts/fired", "user"),
    ("PUT", "/api/me/alerts/WIN", "user"),
    ("DELETE", "/api/me/alerts/WIN", "user"),
    ("POST", "/api/me/alerts/WIN/rearm", "user"),
    ("GET", "/api/dashboard/health", "user"),
    ("GET", "/static/dashboard.css", "public"),
]
CALLERS = ("none", "bad", "expired", "other", "own", "admin")


def expected(kind: str, caller: str) -> set[int]:
    """The codes allowed; 404 where the data may be missing (a session nobody opened)."""
    if kind == "public":
        return {200}
    if caller in ("none", "bad", "expired"):
        return {401}
    if kind == "admin" and caller != "admin":
        return {403}
    if kind == "own" and caller == "other":
        return {403}
    return {200, 204, 404, 422}  # 422: a PUT without a body is still past the token check


def token_for(caller: str) -> str | None:
    tokens = Tokens(SECRET)
    now = int(time.time())
    match caller:
        case "none":
            return None
        case "bad":
            return Tokens("another-secret-" + "y" * 32).create("alice")
        case "expired":
            claims = {"sub": "alice", "adm": True, "iat": now - 100, "exp": now - 10, "iss": ISSUER}
            return jwt.encode(claims, SECRET, algorithm=ALGORITHM)
        case "other":
            return tokens.create("bob")
        case "own":
            return tokens.create("alice")
        case _:
            return tokens.create("root", admin=True)


@pytest.mark.parametrize("how", ["header", "query"])
async def test_the_auth_matrix(gw: Served, stores, how: str) -> None:  # noqa: F811
    await stores.sessions.open("alice", "s1", ["WIN"])
    await stores.configs.set("alice", "theme", "dark")
    seen = []
    for method, path, kind in ENDPOINTS:
        for caller in CALLERS:
            token = token_for(caller)
            url, _, query = path.partition("?")
            headers, params = {}, dict(q.split("=") for q in query.split("&") if q)
            if token and how == "header":
                headers["Authorization"] = f"Bearer {token}"
            elif token:
                params["token"] = token
            body = {"json": "dark"} if method == "PUT" else {}
            response = await gw.http.request(method, url, headers=headers, params=params, **body)
            want = expected(kind, caller)
            assert response.status_code in want, (method, path, caller, response.status_code, response.text)
            if response.status_code in (401, 403):
                assert set(response.json()) == {"code", "message"}
            seen.append((method, path, caller, response.status_code))
    # not vacuous: the own and admin callers really got the data
    assert ("GET", "/api/users/alice/session", "own", 200) in seen
    assert ("GET", "/api/ops/status", "admin", 200) in seen
    assert ("GET", "/api/me/settings/theme", "own", 200) in seen


def test_every_route_is_in_the_matrix() -> None:
    """A route added later must be classified here, so its auth is tested."""
    from smarttrade.gateway import alerts_api, api, page

    listed = {(m, p.split("?")[0]) for m, p, _ in ENDPOINTS}
    for route in [*api.router.routes, *alerts_api.router.routes, *page.router.routes]:
        assert isinstance(route, APIRoute)
        for method in route.methods:
            concrete = route.path.replace("{symbol}", "WIN").replace("{name}", "theme")
            concrete = concrete.replace("{user}", "alice").replace("{path:path}", "dashboard.css")
            assert (method, concrete) in listed, (method, route.path)


async def test_a_bad_authorization_scheme_is_401(gw: Served) -> None:  # noqa: F811
    token = Tokens(SECRET).create("alice")
    response = await gw.http.get("/api/me/settings", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 401
    # the header wins over ?token=: a bad header is not rescued by a good query token
    response = await gw.http.get(
        "/api/me/settings", headers={"Authorization": "Bearer nope"}, params={"token": token}
    )
    assert response.status_code == 401 and "bad token" in response.json()["message"]


def test_tokens_and_ttls() -> None:
    tokens = Tokens(SECRET)
    who = tokens.verify(tokens.create("a.b@c", admin=True, ttl_s=60))
    assert (who.user, who.admin) == ("a.b@c", True)
    with pytest.raises(AuthError, match="expired"):
        tokens.verify(jwt.encode({"sub": "a", "exp": 1, "iss": ISSUER}, SECRET, algorithm=ALGORITHM))
    with pytest.raises(ValueError, match=r"^user"):
        tokens.create("a:b")
    with pytest.raises(ValueError, match=r"^ttl"):
        tokens.create("a", ttl_s=0)
    assert [parse_ttl(t) for t in ("90", "90s", "30m", "12h", "7d")] == [90, 90, 1800, 43200, 604800]
    with pytest.raises(ValueError, match=r"^ttl"):
        parse_ttl("5y")


def test_the_openapi_declares_both_token_schemes(gw_app_schema: dict) -> None:
    schemes = gw_app_schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    assert gw_app_schema["paths"]["/api/quotes/{symbol}"]["get"]["responses"]["404"]


@pytest.fixture
def gw_app_schema(gw: Served) -> dict:  # noqa: F811 - the fixture, by name
    from smarttrade.gateway.app import create_app

    return create_app(gw.ctx).openapi()  # built, never started: the schema needs no connection
