"""The gateway: the HTTP API, the WebSocket fan-out with recovery, sessions, price alerts and the
dashboard page, on one ASGI app (DESIGN.md §6). It reads the stores and the ingest's pub/sub
messages and trade streams; nothing below it imports it."""
