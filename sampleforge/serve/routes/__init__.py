"""The HTTP routes, one module per resource. A new resource is a module with a ``router`` added to ROUTERS."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from sampleforge.serve.routes import audio, health, jobs, models, page, tasks, workflow
from sampleforge.serve.routes.common import require_token

PUBLIC: tuple[APIRouter, ...] = (health.router, page.router)  # no token: probes and the web page
ROUTERS: tuple[APIRouter, ...] = (  # /v1/*: the token
    models.router, jobs.router, audio.router, tasks.router, workflow.router,
)


def api_routers() -> list[APIRouter]:
    """Every router, the token-protected ones wrapped in the bearer-token dependency."""
    protected = APIRouter(dependencies=[Depends(require_token)])
    for router in ROUTERS:
        protected.include_router(router)
    return [*PUBLIC, protected]
