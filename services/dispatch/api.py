"""HTTP API of the dispatch service (under /v1)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1")
