"""The service behind the HTTP routes: accepts jobs, hands them to workers, recovers, cleans up.

Two modes share everything but the hand-off:
- embedded (default): worker threads in this process (worker.py). This process owns the storage
  directory (it holds the lock file ``server.lock`` exclusively, and refuses a storage that live
  ``sampleforge worker``s use), so at start-up every job still marked running was interrupted by a crash or
  ``kill -9``: it goes back to the queue (bounded attempts).
- celery (``--broker``): jobs are published to the broker and run by ``sampleforge worker`` processes.
  The server holds ``server.lock`` shared, so no embedded server starts on its storage (nor it on theirs).
  A hand-off thread publishes every queued job not yet handed over (so a job accepted while the broker
  is down runs once it is back, with no restart), re-queues jobs whose worker stopped heart-beating, and
  publishes again queued jobs whose message the broker lost (a model's broker queue holds fewer messages
  than it has queued jobs: Redis restarted without persistence, a message taken and not run), or still
  queued a visibility timeout after their hand-off.

Readiness (``health``) checks what a job needs: a worker for each served model, a writable database and writable
result files.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from sampleforge.errors import SampleforgeError, UserInputError
from sampleforge.params import GenerationParams
from sampleforge.serve.cleanup import Janitor
from sampleforge.serve.config import SETTINGS_KEY, ServeConfig
from sampleforge.serve.job import QUEUED, Job
from sampleforge.serve.jobstore import JobStore, QueueFull
from sampleforge.serve.results import ResultFiles, ResultWriteError, new_job_id
from sampleforge.serve.runner import GeneratorLike
from sampleforge.serve.schemas import GenerateRequest
from sampleforge.serve.worker import WorkerPool

log = logging.getLogger("sampleforge.serve")


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


def model_samplers(generator: GeneratorLike) -> list[str]:
    """Sampler names the model accepts (a backend's sampler space, or the pipeline's own list)."""
    space = getattr(generator, "space", None)
    return list(space.samplers if space is not None else generator.samplers)


def model_duration(generator: GeneratorLike) -> float:
    """The model's native clip length in seconds (the default ``duration``)."""
    space = getattr(generator, "space", None)
    if space is not None:
        return float(space.default_duration)
    resolved = generator.resolve(GenerationParams())  # what the pipeline fills in when unset
    assert resolved.duration is not None
    return float(resolved.duration)


def model_steps_cfg(generator: GeneratorLike) -> tuple[int, float]:
    """The model's own steps and cfg scale (used where a request leaves them unset)."""
    space = getattr(generator, "space", None)
    if space is not None:
        return int(space.default_steps), float(space.default_cfg)
    resolved = generator.resolve(GenerationParams(seed=0))
    assert resolved.steps is not None and resolved.cfg_scale is not None
    return resolved.steps, resolved.cfg_scale


class ServedModel:
    """One model the service runs: the backend, its samplers and defaults."""

    def __init__(self, generator: GeneratorLike, config: ServeConfig) -> None:
        self.generator = generator
        self.name = str(generator.name)
        self.samplers = model_samplers(generator)
        space = getattr(generator, "space", None)
        self.default_sampler = space.default_sampler if space is not None else self.samplers[0]
        if self.default_sampler not in self.samplers:
            self.default_sampler = self.samplers[0]
        self.default_duration = min(max(model_duration(generator), config.min_duration), config.max_duration)
        own_steps, self.default_cfg = model_steps_cfg(generator)
        self.default_steps = min(own_steps, config.max_steps)  # what a request that names no steps gets
        if self.default_steps < own_steps:
            log.warning(f"model {self.name}: its own {own_steps} steps are above --max-steps {config.max_steps}; "
                        f"requests that name no steps get {self.default_steps}",
                        extra={"event": "steps_capped", "model": self.name})

    def cfg_for(self, params: GenerationParams) -> float:
        """The model's own guidance scale for these settings' prompt and knobs (a model may guide a prompt that
        sets no timbre knob more firmly: ``diffusion.cfg_scale_no_knobs``)."""
        scales = getattr(self.generator, "cfg_scales", None)
        return float(scales([params.prompt], params)[0]) if scales is not None else self.default_cfg

    def info(self) -> dict[str, Any]:
        space = getattr(self.generator, "space", None)
        defaults: dict[str, Any] = {"steps": self.default_steps, "cfg_scale": self.default_cfg}
        plain = self.cfg_for(GenerationParams(prompt=""))  # a prompt that sets no timbre knob
        if plain != self.default_cfg:
            defaults["cfg_scale_no_knobs"] = plain
        return {"name": self.name, "kind": getattr(self.generator, "kind", "sampleforge"),
                "sample_rate": self.generator.sample_rate, "duration": self.default_duration,
                "samplers": self.samplers, "default_sampler": self.default_sampler,
                "defaults": defaults,
                **({"channels": space.channels, "settings": list(space.settings)} if space is not None else {})}


class StorageUnavailable(SampleforgeError):
    """The job database or the result folder refuses writes: the server cannot take jobs now."""


PROBE_INTERVAL_S = 1.0  # the readiness probe writes to the database and the result folder this often
PROBE_STALL_S = 5.0  # a probe that has not completed for this long makes the server not ready


class Service:
    """State shared by the routes: config, models, job store, result files and the hand-off to workers.

    ``generator`` is one model or a mapping name -> model (the first is the default): each model gets its own
    worker pool, and a request names the model it wants."""

    def __init__(self, config: ServeConfig, generator: GeneratorLike | Mapping[str, GeneratorLike]) -> None:
        config.check()
        check_limits_fit_model(config)
        gens = list(generator.values()) if isinstance(generator, Mapping) else [generator]
        self.models = {m.name: m for m in (ServedModel(g, config) for g in gens)}
        default = next(iter(self.models.values()))
        self.config, self.generator = config, default.generator
        self.files = ResultFiles(config.storage, durable=config.durable)
        self.store = JobStore(self.files.db_path, durable=config.durable)
        self.mode = "celery" if config.broker else "embedded"
        self.samplers = default.samplers
        self.default_duration, self.default_sampler = default.default_duration, default.default_sampler
        self.started_at = time.time()
        self.pools: list[WorkerPool] = []
        self.celery: Any = None
        self._janitor = Janitor(self.store, self.files, config.cleanup_interval_s, config.ttl_seconds)
        self._lock_file: IO[str] | None = None
        self._stop = threading.Event()
        self._recovery: threading.Thread | None = None
        self._publish = threading.Event()  # celery mode: wake the hand-off thread
        self._started = False
        self._probed: tuple[float, list[str]] = (-PROBE_STALL_S, [])  # (monotonic time, problems) for health()
        self._probe_lock = threading.Lock()
        self._prober: threading.Thread | None = None

    # ---- life cycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start workers (or the broker hand-off), recovery and clean-up. Idempotent."""
        if self._started:
            return
        self._claim_storage()
        self._started = True
        if self.mode == "embedded":
            requeued, failed = self.store.requeue_abandoned(self.config.max_attempts)
            if requeued or failed:
                log.info("recovered interrupted jobs", extra={"event": "recovered", "requeued": requeued,
                                                                "failed": failed})
            self.pools = [WorkerPool(self.store, self.files, m.generator, self.config) for m in self.models.values()]
            for pool in self.pools:
                pool.start()
        else:
            from sampleforge.serve.celery_app import make_celery

            assert self.config.broker
            self._record_settings()
            self.celery = make_celery(self.config.broker, self.config)
            self._recovery = threading.Thread(target=self._handoff_loop, daemon=True, name="sampleforge-handoff")
            self._recovery.start()
        self._janitor.start()
        self._probe()  # ready (or not) from the first health check on
        self._prober = threading.Thread(target=self._probe_loop, daemon=True, name="sampleforge-readiness")
        self._prober.start()
        log.info("service started", extra={"event": "service_start", "mode": self.mode, "model": ",".join(self.models),
                                           "storage": str(self.files.root)})

    def stop(self) -> None:
        """Stop workers (a running batch goes back to the queue) and release the storage. Idempotent."""
        if not self._started or self._stop.is_set():
            return
        self._stop.set()
        self._janitor.stop()
        for pool in self.pools:
            pool.stop()
        self._publish.set()
        for thread in (self._recovery, self._prober):
            if thread is not None:
                thread.join(5.0)
        self._release_lock()
        log.info("service stopped", extra={"event": "service_stop"})

    def _record_settings(self) -> None:
        """Write this --broker server's settings into the store, for its workers to compare with theirs (a store
        refusing writes only loses that comparison: health says it refuses writes)."""
        try:
            self.store.set_meta(SETTINGS_KEY, self.config.shared_settings())
        except sqlite3.Error as exc:
            log.warning("settings not recorded", extra={"event": "settings_not_recorded", "error": str(exc)})

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _claim_storage(self) -> None:
        """Make this server the storage's: its lock, and (embedded) no live ``sampleforge worker`` on it.
        SampleforgeError, holding nothing, if another server or a --broker deployment uses it."""
        self._take_lock(exclusive=self.mode == "embedded")
        if self.mode == "embedded":
            try:
                self._refuse_live_broker_workers()
            except SampleforgeError:
                self._release_lock()
                raise

    def _take_lock(self, exclusive: bool) -> None:
        """Hold ``server.lock`` for the life of the server: exclusive for an embedded server (it alone runs the
        storage's jobs), shared for a --broker one (its workers run them). SampleforgeError if another server
        holds it in the other way."""
        handle = self.files.take_lock(exclusive)
        if handle is None:
            holder_embedded = not exclusive or not self.files.lock_free(exclusive=False)
            raise SampleforgeError(self._lock_problem(holder_embedded))
        if exclusive:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        self._lock_file = handle

    def _lock_problem(self, holder_embedded: bool) -> str:
        """The one-line refusal when another server holds the storage (``holder_embedded``: without --broker)."""
        root = self.files.root
        if self.mode == "embedded" and holder_embedded:
            return (f"storage {root} is used by another `sampleforge serve` (embedded mode); "
                    "give each server its own --storage, or use --broker to share one")
        if self.mode == "embedded":
            return (f"storage {root} is used by another `sampleforge serve` (with --broker), whose workers run its "
                    "jobs; give this server its own --storage, or start it with the same --broker")
        return (f"storage {root} is used by another `sampleforge serve` (embedded mode), whose threads run its "
                "jobs; give this server its own --storage, or stop that one")

    def _refuse_live_broker_workers(self) -> None:
        """An embedded server re-queues every running job at start: refuse a storage whose jobs live
        ``sampleforge worker``s may be running (a --broker deployment whose server is down)."""
        alive = [w for w in self.store.alive_workers(within_s=self._liveness_window()) if w.get("kind") == "celery"]
        if alive:
            raise SampleforgeError(
                f"storage {self.files.root} is used by a --broker deployment ({len(alive)} `sampleforge worker` "
                "alive on it), whose jobs this server would run again; start it with their --broker, or give it "
                "its own --storage")

    # ---- jobs ----------------------------------------------------------------------------------------
    def model(self, name: str | None) -> ServedModel:
        """The served model called ``name`` (None: the default one); UserInputError naming the served ones."""
        if name is None:
            return next(iter(self.models.values()))
        if name not in self.models:
            raise UserInputError(f"unknown model {name!r} (served: {', '.join(self.models)})")
        return self.models[name]

    def job_params(self, req: GenerateRequest, served: ServedModel) -> GenerationParams:
        """The request's settings with the model's own steps, cfg scale, sampler and duration filled in (the
        seed stays unset if the client gave none: the worker picks contiguous seeds for a whole batch)."""
        params = req.to_params()
        return dataclasses.replace(params, model=served.name, sampler=req.sampler or served.default_sampler,
                                   duration=req.duration if req.duration is not None else served.default_duration,
                                   steps=req.steps if req.steps is not None else served.default_steps,
                                   cfg_scale=req.cfg_scale if req.cfg_scale is not None else served.cfg_for(params))

    def submit(self, req: GenerateRequest, source: str = "generate", client_ref: str | None = None) -> Job:
        """Persist a validated request as a queued job and hand it to a worker.

        Raises QueueFull, or StorageUnavailable if the database refuses the write."""
        served = self.model(getattr(req, "model", None))
        params = self.job_params(req, served)
        job = Job(
            id=new_job_id(), state=QUEUED, model=served.name, prompt=req.prompt, params=params,
            ttl_s=self.config.ttl_seconds, created_at=time.time(), seed=req.seed, source=source, client_ref=client_ref,
            warnings=[*served.generator.check_prompt(req.prompt), *served.generator.settings_warnings(params)],
        )
        return self.enqueue(job)

    def enqueue(self, job: Job, inputs: Mapping[str, Any] | None = None) -> Job:
        """Persist ``job`` (queued) with its uploaded clips ``inputs`` ({field: (T,) audio at the model's rate},
        written first, so a stored job always finds them) and hand it to a worker.

        Raises QueueFull, or StorageUnavailable if the database or the result folder refuses the write."""
        try:
            for field, wav in (inputs or {}).items():
                self.files.write_input(job.id, field, wav, self.model(job.model).generator.sample_rate)
            self.store.submit(job, max_active=self.config.max_queue)
        except (sqlite3.Error, ResultWriteError, QueueFull) as exc:
            if inputs:
                self.files.delete(job.id)
            if isinstance(exc, QueueFull):
                raise
            log.error("job not stored", extra={"event": "submit_failed", "error": str(exc)})
            raise StorageUnavailable("the job database or result folder refuses writes; try again later") from None
        log.info("job accepted", extra={"event": "job_accepted", "job": job.id, "clips": job.count,
                                        "source": job.source, "operation": job.operation})
        self._dispatch()
        return job

    def _dispatch(self) -> None:
        """Tell the workers (embedded) or the hand-off thread (celery) that a job is waiting."""
        if self.pools:
            for pool in self.pools:
                pool.notify()
        else:
            self._publish.set()

    def _publish_job(self, job_id: str) -> bool:
        """Hand one job to its model's broker queue; False if the broker cannot be reached (it stays unpublished)."""
        from sampleforge.serve.celery_app import TASK_NAME, queue_name

        job = self.store.get(job_id)
        if job is None:
            return True
        try:  # the store's id tells a worker with another --storage that the job is not its own
            self.celery.send_task(TASK_NAME, args=[job_id, self.store.storage_id], queue=queue_name(job.model))
        except Exception as exc:  # the job is safe in the store; the next pass publishes it again
            log.warning("publish failed", extra={"event": "publish_failed", "job": job_id, "error": str(exc)})
            return False
        self.store.mark_published(job_id)
        return True

    def cancel_or_delete(self, job: Job) -> dict[str, Any]:
        """Cancel a queued/running job; delete a finished one (row and audio)."""
        if not job.terminal and self.store.cancel(job.id):
            log.info("job cancelled", extra={"event": "job_cancelled", "job": job.id})
            self.files.delete(job.id)  # a running worker drops its files when it finds the job cancelled
            return {"id": job.id, "state": "cancelled", "deleted": False}
        self.store.delete(job.id, only_terminal=True)
        self.files.delete(job.id)
        log.info("job deleted", extra={"event": "job_deleted", "job": job.id})
        return {"id": job.id, "state": "deleted", "deleted": True}

    def retry_after(self) -> int:
        """Seconds a client should wait when the queue is full: about when the next job finishes."""
        per_job = self.store.mean_run_seconds() or 5.0
        return max(1, min(600, math.ceil(per_job / max(1, self.workers_alive()))))

    def workers_alive(self) -> int:
        """Live workers that run a model this server serves."""
        return sum(self.workers_by_model(self.worker_models()).values())

    def worker_models(self) -> list[str]:
        """The model of each live worker: the threads of each pool (embedded), or each ``sampleforge worker`` that
        heart-beats into the store (celery)."""
        if self.pools:
            return [str(pool.generator.name) for pool in self.pools for _ in range(pool.alive())]
        return [str(w.get("model")) for w in self.store.alive_workers(within_s=self._liveness_window())]

    def workers_by_model(self, models: list[str]) -> dict[str, int]:
        """How many of the workers running ``models`` run each served model (another model's worker runs none of
        this server's jobs)."""
        return {name: models.count(name) for name in self.models}

    def _liveness_window(self) -> float:
        """A worker that heart-beat within this many seconds is alive (it beats every heartbeat_seconds)."""
        return 3 * self.config.heartbeat_seconds + 2

    def write_problems(self) -> list[str]:
        """Why jobs cannot be stored right now ([] if the database and result folder take writes).

        A started service probes in the background every PROBE_INTERVAL_S, so this never waits for the disk;
        a probe stuck longer than PROBE_STALL_S is itself a problem. Messages name no server path."""
        with self._probe_lock:
            checked, problems = self._probed
        age = time.monotonic() - checked
        if self._prober is not None and self._prober.is_alive():
            return problems if age < PROBE_STALL_S else [*problems, f"storage writes stalled for {age:.0f} s"]
        if age >= PROBE_INTERVAL_S:  # not started (tests, tools): probe in line
            problems = self._probe()
        return problems

    def _probe(self) -> list[str]:
        problems = []
        try:
            self.store.probe_write()
        except sqlite3.Error as exc:
            problems.append(f"database refuses writes ({exc})")
        try:
            self.files.probe_write()
        except OSError as exc:
            problems.append(f"result folder refuses writes ({exc.strerror or type(exc).__name__})")
        with self._probe_lock:
            self._probed = (time.monotonic(), problems)
        return problems

    def _probe_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._probe()
            except Exception:
                log.exception("readiness probe failed", extra={"event": "probe_error"})
            self._stop.wait(PROBE_INTERVAL_S)

    def health(self) -> dict[str, Any]:
        problems = self.write_problems()
        counts, running = {"queued": 0, "running": 0}, []
        try:
            counts, running = self.store.counts(), self.worker_models()
        except sqlite3.Error as exc:
            problems = [*problems, f"database unreadable ({exc})"]
        per_model = self.workers_by_model(running)
        problems = [*problems, *self._worker_problems(per_model, running)]
        alive = sum(per_model.values())
        expected = self.config.workers * len(self.models) if self.mode == "embedded" else None
        ready = not problems
        return {
            "status": "ok" if ready else "degraded",
            "live": True,
            "ready": ready,
            "problems": problems,
            "mode": self.mode,
            "model": {"name": self.generator.name, "loaded": True, "sample_rate": self.generator.sample_rate},
            "models": list(self.models),
            "queue": {"queued": counts["queued"], "running": counts["running"], "max": self.config.max_queue},
            "workers": {"alive": alive, "expected": expected, "models": per_model},
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    def _worker_problems(self, per_model: dict[str, int], running: list[str]) -> list[str]:
        """One problem per served model no live worker runs (its jobs would wait for ever), naming the models the
        live workers run instead, if any (a worker started with another --model)."""
        others = sorted(set(running) - set(self.models))
        instead = f" (workers alive run {', '.join(repr(m) for m in others)})" if others else ""
        return [f"no worker alive for model {name!r}{instead}" for name, n in per_model.items() if n == 0]

    # ---- celery-mode hand-off and recovery -----------------------------------------------------------
    def _handoff_loop(self) -> None:
        """Publish unpublished jobs (woken by submit), re-queue jobs of silent workers, republish lost ones."""
        interval = self.config.handoff_seconds
        republish_before = time.time()  # at start-up: every queued job (the broker may have lost them)
        while not self._stop.is_set():
            self._publish.clear()
            try:
                self._handoff_pass(republish_before)
                republish_before = time.time() - self.config.visibility_timeout_s
            except Exception:
                log.exception("hand-off pass failed", extra={"event": "recovery_error"})
            self._publish.wait(interval * (0.9 + 0.2 * random.random()))

    def _handoff_pass(self, republish_before: float) -> None:
        now = time.time()
        # each job's own holder's lease counts too: a worker with a longer --lease-seconds beats less often
        requeued, failed = self.store.requeue_abandoned(self.config.max_attempts, lease_s=self.config.lease_seconds)
        if requeued or failed:
            log.warning("re-queued jobs of silent workers", extra={"event": "recovered",
                                                                   "requeued": requeued, "failed": failed})
        for job_id in self.store.unpublished(older_than=republish_before):
            if self._stop.is_set() or not self._publish_job(job_id):
                return  # the broker is down: try the rest at the next pass
        self._republish_lost(now - self.config.lost_after_seconds)

    def _republish_lost(self, published_before: float) -> None:
        """Publish again the queued jobs of each model whose broker queue holds fewer messages than the model has
        queued jobs (Redis restarted without persistence, a worker took a message and did not run its job), once
        their last hand-off is older than ``published_before``. Which message is missing is unknown, so every such
        job goes again: a duplicate delivery is a no-op, a lost message would leave its job queued for good."""
        from sampleforge.serve.celery_app import queue_name

        for model, ids in self.store.published_before(published_before).items():
            waiting = self._waiting(queue_name(model))
            if waiting is None or waiting >= self.store.queued_count(model):
                continue
            log.warning("republishing queued jobs the broker lost", extra={
                "event": "republish_lost", "model": model, "jobs": ids, "waiting": waiting})
            for job_id in ids:
                if self._stop.is_set() or not self._publish_job(job_id):
                    return

    def _waiting(self, queue: str) -> int | None:
        """Messages waiting in a broker queue, not yet taken by a worker (None: the broker cannot say now)."""
        try:
            with self.celery.pool.acquire(block=True, timeout=5.0) as conn:
                conn.ensure_connection(max_retries=1)
                return int(conn.default_channel.queue_declare(queue=queue).message_count)
        except Exception as exc:  # the broker is down: publishing fails too, and says so
            log.debug("broker queue unreadable", extra={"event": "queue_unreadable", "error": str(exc)})
            return None
