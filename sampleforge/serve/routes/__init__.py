"""The HTTP routes, one module per resource. A new resource is a module with a ``router`` added to ROUTERS."""

from __future__ import annotations

from fastapi import APIRouter

from sampleforge.serve.routes import audio, health, jobs, models, page, tasks, workflow

PUBLIC: tuple[APIRouter, ...] = (health.router, page.router)  # no token: probes and the web page
ROUTERS: tuple[APIRouter, ...] = (  # /v1/*: the token
    models.router, jobs.router, audio.router, tasks.router, workflow.router,
)
_PUBLIC_PATHS = frozenset(getattr(route, "path", "") for router in PUBLIC for route in router.routes)


def api_routers() -> list[APIRouter]:
    """Every router: the public ones, then the token-protected ones (see ``needs_token``)."""
    return [*PUBLIC, *ROUTERS]


def needs_token(path: str) -> bool:
    """Whether a request for ``path`` needs the bearer token (when one is set): every ``/v1/*`` path but those of
    the PUBLIC routes. The token is checked before anything else (middleware.BearerToken)."""
    return path.startswith("/v1/") and path.rstrip("/") not in _PUBLIC_PATHS
