"""The live page: static files (no build step) and the configuration they read at load."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/config.json")
async def config(request: Request) -> dict[str, object]:
    settings = request.app.state.settings
    return {
        "ws_url": settings.ws_public_url,
        "index_id": settings.index_id,
        "stale_after_seconds": settings.stale_after_seconds,
        "auth_required": settings.auth_required,
    }


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC)
