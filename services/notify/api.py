"""HTTP API of the notify service (under /v1)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1")
