"""The web page at ``/`` (its scripts and styles are mounted at ``/static`` by the app)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from sampleforge.serve.routes.common import ApiRoute

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(route_class=ApiRoute)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")
