"""The service behind the HTTP routes: accepts jobs, hands them to workers, recovers, cleans up.

Two modes share everything but the hand-off:
- embedded (default): worker threads in this process (worker.py). This process owns the storage
  directory (a lock file enforces one server per directory), so at start-up every job still marked
  running was interrupted by a crash or ``kill -9``: it goes back to the queue (bounded attempts).
- celery (``--broker``): jobs are published to the broker and run by ``sampleforge worker`` processes.
  A recovery thread re-queues jobs whose worker stopped heart-beating and republishes unsent jobs.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import random
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from sampleforge.errors import SampleforgeError, UserInputError
from sampleforge.serve.cleanup import Janitor
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.jobs import GeneratorLike, batch_key
from sampleforge.serve.schemas import GenerateRequest
from sampleforge.serve.storage import Storage, new_job_id
from sampleforge.serve.store import QUEUED, Job, JobStore
from sampleforge.serve.worker import WorkerPool

log = logging.getLogger("sampleforge.serve")


def model_samplers(generator: GeneratorLike) -> list[str]:
    """Sampler names the model accepts: flow samplers for a flow-matching model, the others otherwise."""
    space = getattr(generator, "space", None)
    if space is not None:
        return list(space.samplers)
    names = getattr(generator, "samplers", None)
    if names:
        return sorted(names)
    try:
        from sampleforge.diffusion.samplers import FLOW_SAMPLERS, SAMPLERS
    except ImportError:
        return ["ddim"]
    bundle = getattr(generator, "bundle", None)
    prediction = getattr(getattr(getattr(bundle, "config", None), "diffusion", None), "prediction", "eps")
    flow = prediction == "flow"
    return sorted(name for name in SAMPLERS if (name in FLOW_SAMPLERS) == flow)


def model_duration(generator: GeneratorLike) -> float:
    """The model's native clip length in seconds (the default ``duration``)."""
    space = getattr(generator, "space", None)
    if space is not None:
        return float(space.default_duration)
    bundle = getattr(generator, "bundle", None)
    value = getattr(getattr(bundle, "config", None), "duration", None)
    return float(value) if value else 2.0


def check_limits_fit_model(config: ServeConfig) -> None:
    """Refuse server limits wider than the generation settings accept (a job the server takes must never fail on them)."""
    from sampleforge.params import SPECS

    steps, duration, count = SPECS["steps"], SPECS["duration"], SPECS["count"]
    assert steps.le is not None and duration.ge is not None and duration.le is not None and count.le is not None
    if config.max_steps > steps.le:
        raise UserInputError(f"--max-steps {config.max_steps} is above the generation limit {steps.le:g}")
    if config.max_count > count.le:
        raise UserInputError(f"--max-count {config.max_count} is above the generation limit {count.le:g}")
    if not duration.ge <= config.min_duration <= config.max_duration <= duration.le:
        raise UserInputError(
            f"durations {config.min_duration}..{config.max_duration} s must lie within the generation limits "
            f"{duration.ge:g}..{duration.le:g} s"
        )


class ServedModel:
    """One model the service runs: the backend, its samplers and defaults."""

    def __init__(self, generator: GeneratorLike, config: ServeConfig) -> None:
        self.generator = generator
        self.name = str(generator.name)
        self.samplers = model_samplers(generator)
        space = getattr(generator, "space", None)
        preferred = [space.default_sampler] if space is not None else ["ddim", "flow_euler"]
        self.default_sampler = next((s for s in preferred if s in self.samplers), self.samplers[0])
        self.default_duration = min(max(model_duration(generator), config.min_duration), config.max_duration)

    def info(self) -> dict[str, Any]:
        space = getattr(self.generator, "space", None)
        return {"name": self.name, "kind": getattr(self.generator, "kind", "sampleforge"),
                "sample_rate": self.generator.sample_rate, "duration": self.default_duration,
                "samplers": self.samplers, "default_sampler": self.default_sampler,
                **({"defaults": {"steps": space.default_steps, "cfg_scale": space.default_cfg},
                    "channels": space.channels} if space is not None else {})}


class Service:
    """State shared by the routes: config, models, store, storage and the hand-off to workers.

    ``generator`` is one model or a mapping name -> model (the first is the default): each model gets its own
    worker pool, and a request names the model it wants."""

    def __init__(self, config: ServeConfig, generator: GeneratorLike | Mapping[str, GeneratorLike]) -> None:
        check_limits_fit_model(config)
        gens = list(generator.values()) if isinstance(generator, Mapping) else [generator]
        self.models = {m.name: m for m in (ServedModel(g, config) for g in gens)}
        default = next(iter(self.models.values()))
        self.config, self.generator = config, default.generator
        self.storage = Storage(config.storage)
        self.store = JobStore(self.storage.db_path)
        self.mode = "celery" if config.broker else "embedded"
        self.samplers = default.samplers
        self.default_duration = default.default_duration
        self.default_sampler = default.default_sampler
        self.started_at = time.time()
        self.pool: WorkerPool | None = None
        self.pools: list[WorkerPool] = []
        self.celery: Any = None
        self._janitor = Janitor(self.store, self.storage, config.cleanup_interval_s, config.ttl_seconds)
        self._lock_file: IO[str] | None = None
        self._stop = threading.Event()
        self._recovery: threading.Thread | None = None
        self._started = False

    # ---- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start workers (or the broker hand-off), recovery and clean-up. Idempotent."""
        if self._started:
            return
        self._started = True
        if self.mode == "embedded":
            self._take_lock()
            requeued, failed = self.store.requeue_abandoned(self.config.max_attempts)
            if requeued or failed:
                log.info("recovered interrupted jobs", extra={"event": "recovered", "requeued": requeued,
                                                                "failed": failed})
            self.pools = [WorkerPool(self.store, self.storage, m.generator, self.config)
                          for m in self.models.values()]
            self.pool = self.pools[0]
            for pool in self.pools:
                pool.start()
        else:
            from sampleforge.serve.celery_app import make_celery

            assert self.config.broker
            self.celery = make_celery(self.config.broker, self.config)
            self._recovery = threading.Thread(target=self._recover_loop, daemon=True, name="sampleforge-recovery")
            self._recovery.start()
        self._janitor.start()
        log.info("service started", extra={"event": "service_start", "mode": self.mode, "model": ",".join(self.models),
                                           "storage": str(self.storage.root)})

    def stop(self) -> None:
        """Stop workers (a running batch goes back to the queue) and release the storage. Idempotent."""
        if not self._started or self._stop.is_set():
            return
        self._stop.set()
        self._janitor.stop()
        for pool in self.pools:
            pool.stop()
        if self._recovery is not None:
            self._recovery.join(5.0)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        log.info("service stopped", extra={"event": "service_stop"})

    def _take_lock(self) -> None:
        path = self.storage.root / "server.lock"
        handle = open(path, "a+")  # noqa: SIM115 (held open for the life of the server)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SampleforgeError(
                f"storage {self.storage.root} is used by another `sampleforge serve` (embedded mode); "
                "give each server its own --storage, or use --broker to share one"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle

    # ---- jobs ----------------------------------------------------------------------------------------
    def model(self, name: str | None) -> ServedModel:
        """The served model called ``name`` (None: the default one); UserInputError naming the served ones."""
        if name is None:
            return next(iter(self.models.values()))
        if name not in self.models:
            raise UserInputError(f"unknown model {name!r} (served: {', '.join(self.models)})")
        return self.models[name]

    def submit(self, req: GenerateRequest, source: str = "generate", client_ref: str | None = None) -> Job:
        """Persist a validated request as a queued job and hand it to a worker. Raises QueueFull."""
        served = self.model(getattr(req, "model", None))
        params = {
            "count": req.count, "steps": req.steps, "cfg_scale": req.cfg_scale,
            "sampler": req.sampler or served.default_sampler,
            "seed": req.seed, "duration": req.duration if req.duration is not None else served.default_duration,
            "format": req.format,
        }
        job_id = new_job_id()
        job = Job(
            id=job_id, state=QUEUED, model=served.name, prompt=req.prompt, params=params,
            batch_key=batch_key(params, job_id), ttl_s=self.config.ttl_seconds, created_at=time.time(), seed=req.seed,
            warnings=list(served.generator.check_prompt(req.prompt)), source=source, client_ref=client_ref,
        )
        self.store.submit(job, max_active=self.config.max_queue)
        log.info("job accepted", extra={"event": "job_accepted", "job": job.id, "clips": req.count,
                                        "source": source, "model": served.name})
        self._dispatch(job.id, served.name)
        return job

    def _dispatch(self, job_id: str, model: str | None = None) -> None:
        if self.pools:
            for pool in self.pools:
                pool.notify()
        elif self.celery is not None:
            from sampleforge.serve.celery_app import TASK_NAME, queue_name

            if model is None:
                job = self.store.get(job_id)
                model = job.model if job is not None else self.generator.name
            try:
                self.celery.send_task(TASK_NAME, args=[job_id], queue=queue_name(model))
            except Exception:  # the job is safe in the store; the recovery loop publishes it again
                log.exception("publish failed", extra={"event": "publish_failed", "job": job_id})

    def cancel_or_delete(self, job: Job) -> dict[str, Any]:
        """Cancel a queued/running job; delete a finished one (row and audio)."""
        if not job.terminal and self.store.cancel(job.id):
            log.info("job cancelled", extra={"event": "job_cancelled", "job": job.id})
            self.storage.delete(job.id)  # a running worker drops its files when it finds the job cancelled
            return {"id": job.id, "state": "cancelled", "deleted": False}
        self.store.delete(job.id, only_terminal=True)
        self.storage.delete(job.id)
        log.info("job deleted", extra={"event": "job_deleted", "job": job.id})
        return {"id": job.id, "state": "deleted", "deleted": True}

    def retry_after(self) -> int:
        """Seconds a client should wait when the queue is full: about when the next job finishes."""
        per_job = self.store.mean_run_seconds() or 5.0
        return max(1, min(600, math.ceil(per_job / max(1, self.workers_alive()))))

    def workers_alive(self) -> int:
        if self.pools:
            return sum(pool.alive() for pool in self.pools)
        return len(self.store.alive_workers(within_s=3 * self.config.heartbeat_seconds + 2))

    def health(self) -> dict[str, Any]:
        counts = self.store.counts()
        alive = self.workers_alive()
        expected = self.config.workers * len(self.models) if self.mode == "embedded" else None
        ready = alive > 0
        return {
            "status": "ok" if ready else "degraded",
            "live": True,
            "ready": ready,
            "mode": self.mode,
            "model": {"name": self.generator.name, "loaded": True, "sample_rate": self.generator.sample_rate},
            "models": list(self.models),
            "queue": {"queued": counts["queued"], "running": counts["running"], "max": self.config.max_queue},
            "workers": {"alive": alive, "expected": expected},
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    # ---- celery-mode recovery ------------------------------------------------------------------------
    def _recover_loop(self) -> None:
        """Republish queued jobs at start, then re-queue and republish jobs whose worker went silent."""
        interval = max(0.2, self.config.lease_seconds / 2)
        first = True
        while not self._stop.is_set():
            try:
                if first:
                    for job_id in self.store.ids_in_state(QUEUED):
                        self._dispatch(job_id)
                    first = False
                stale = time.time() - self.config.lease_seconds
                requeued, failed = self.store.requeue_abandoned(self.config.max_attempts, stale_before=stale)
                for job_id in requeued:
                    self._dispatch(job_id)
                if requeued or failed:
                    log.warning("re-queued jobs of silent workers", extra={"event": "recovered",
                                                                           "requeued": requeued, "failed": failed})
            except Exception:
                log.exception("recovery pass failed", extra={"event": "recovery_error"})
            self._stop.wait(interval * (0.9 + 0.2 * random.random()))

