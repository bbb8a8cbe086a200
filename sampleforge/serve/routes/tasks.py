"""``/v1/tasks``: the same jobs, task-service style (AudioLDM-service names and status words)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sampleforge.serve.routes.common import (
    JsonBodyRoute,
    ServiceDep,
    accepted,
    check_limits,
    load_job,
    submit,
)
from sampleforge.serve.schemas import TASK_FIELDS, TaskRequest
from sampleforge.serve.views import task_view

router = APIRouter(tags=["tasks"], route_class=JsonBodyRoute)


def task_loc(setting: str) -> tuple[str, ...]:
    """Where a task carries ``setting`` (422 locations name what the client sent): the prompt beside the
    params, the rest inside them under their task-API names."""
    if setting == "prompt":
        return ("body", "data", "prompt")
    return ("body", "data", "params", TASK_FIELDS.get(setting, setting))


@router.post("/v1/tasks", status_code=202, summary="Queue a job, task-service style")
def create_task(req: TaskRequest, service: ServiceDep) -> JSONResponse:
    gen = req.to_generate()
    check_limits(service, gen, task_loc)
    job = submit(service, gen, "task", client_ref=req.id)
    return accepted(job, task_view(job))


@router.get("/v1/tasks/{job_id}", summary="A task's status and, once completed, its audio URLs")
def get_task(job_id: str, service: ServiceDep) -> dict[str, Any]:
    return task_view(load_job(service, job_id))
