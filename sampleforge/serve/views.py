"""How a job looks over HTTP: the ``/v1/jobs`` view and the task-style (``/v1/tasks``) view."""

from __future__ import annotations

import re
import time
from pathlib import PurePosixPath
from typing import Any

from sampleforge.serve.job import Job

# task-style status names (the AudioLDM-service convention) for our job states
TASK_STATUS = {"queued": "pending", "running": "running", "succeeded": "completed", "failed": "failed",
               "cancelled": "cancelled"}


def iso(ts: float | None) -> str | None:
    """Unix time -> ``2025-01-31T12:00:00.123Z`` (None stays None)."""
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def job_urls(job: Job) -> dict[str, Any]:
    """The job's URLs; ``audio``: one per clip (a workflow job's once it has succeeded)."""
    base = f"/v1/jobs/{job.id}"
    if job.request is None:
        audio = [f"{base}/audio/{k}.{job.extension}" for k in range(job.count)]
    else:
        audio = [result_url(job, r) for r in job.results]
    return {"self": base, "events": f"{base}/events", "pack": f"{base}/pack.zip", "audio": audio}


def result_url(job: Job, result: dict[str, Any]) -> str:
    """``/v1/jobs/<id>/audio/<index>.<ext>`` of one result file."""
    return f"/v1/jobs/{job.id}/audio/{result['index']}{PurePosixPath(result['file']).suffix}"


def job_view(job: Job, queue_position: int | None = None) -> dict[str, Any]:
    """The JSON of ``GET /v1/jobs/{id}`` (a workflow job adds ``operation`` and its ``request``)."""
    results = [{**{k: v for k, v in r.items() if k != "file"}, "url": result_url(job, r)} for r in job.results]
    view: dict[str, Any] = {
        "job_id": job.id,
        "state": job.state,
        "progress": round(min(1.0, max(0.0, job.progress)), 4),
        "model": job.model,
        "prompt": job.prompt,
        "params": job.view_params(),
        "seed": job.seed,
        "warnings": job.warnings,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "expires_at": iso(job.finished_at + job.ttl_s) if job.finished_at is not None else None,
        "results": results,
        "urls": job_urls(job),
    }
    if job.request is not None:
        view["operation"] = job.operation
        view["request"] = {k: v for k, v in job.request.items() if k != "operation"}
    if queue_position is not None:
        view["queue_position"] = queue_position
    return view


def task_view(job: Job) -> dict[str, Any]:
    """The JSON of ``POST/GET /v1/tasks``: the same job in task-service terms."""
    urls = job_urls(job)
    result = None
    if job.state == "succeeded":
        result = {"data": {"audio": urls["audio"], "sampleRate": job.results[0].get("sample_rate") if job.results
                           else None, "format": job.params.format, "seeds": [r["seed"] for r in job.results],
                           "pack": urls["pack"]}}
    return {
        "id": job.client_ref or job.id,
        "job_id": job.id,
        "type": "audio-generation",
        "status": TASK_STATUS[job.state],
        "progress": round(min(1.0, max(0.0, job.progress)), 4),
        "warnings": job.warnings,
        "error": job.error,
        "result": result,
        "urls": {"task": f"/v1/tasks/{job.id}", **urls},
    }


def download_name(job: Job, index: int | None = None) -> str:
    """A download's file name: a workflow result's own (``variation_9.wav``, ``kick.wav``; a kit:
    ``dusty_808.zip``), else ``kick_punchy_808_1a2b3c4d_0.wav`` (clip) or ``..._1a2b3c4d.zip`` (pack): prompt
    words + job id."""
    if index is not None and index < len(job.results) and "name" in job.results[index]:
        return str(job.results[index]["name"])
    if index is None and job.request is not None and job.request.get("name"):
        return f"{job.request['name']}.zip"
    words = re.findall(r"[a-z0-9]+", job.prompt.lower())
    stem = "_".join(words)[:40].strip("_") or "clip"
    if index is None:
        return f"{stem}_{job.id[:8]}.zip"
    return f"{stem}_{job.id[:8]}_{index}.{job.extension}"
