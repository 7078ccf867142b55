"""HTTP API routes (docs/gateway.md)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
