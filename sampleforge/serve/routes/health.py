"""``/v1/health`` (readiness) and ``/v1/health/live`` (liveness): public, for probes and load balancers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sampleforge.serve.routes.common import ApiRoute, ServiceDep

router = APIRouter(tags=["health"], route_class=ApiRoute)


@router.get("/v1/health/live", summary="Liveness: the process answers")
def live() -> dict[str, Any]:
    return {"live": True}


@router.get("/v1/health", summary="Readiness: a worker alive, database and result folder writable (else 503)")
def health(service: ServiceDep) -> JSONResponse:
    body = service.health()
    return JSONResponse(status_code=200 if body["ready"] else 503, content=body)
