"""The WebSocket endpoint /ws (docs/protocol.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
