"""Scale-out: the job function as a Celery task, run by ``sampleforge worker`` processes.

The server inserts the job into the shared SQLite store, then publishes ``sampleforge.generate(job_id,
storage_id)`` to the model's queue on the broker (Redis). A worker claims the job (plus compatible queued
jobs: the same batching as embedded mode), writes audio into the shared storage directory and marks the
jobs done.

Delivery guarantees:
- ``task_acks_late`` + ``worker_prefetch_multiplier=1``: a message is acknowledged only after the job
  ran, and a worker reserves one message at a time; ``task_reject_on_worker_lost``: if a pool process
  dies mid-task, the message is requeued instead of acknowledged.
- A worker killed outright (``kill -9``, power loss) leaves its message unacknowledged in Redis; Redis
  hands it out again after ``visibility_timeout``. Sooner than that, the server sees the job's lease
  expire (no heartbeat for ``lease_seconds``), puts it back in the queue and publishes it again.
- The server publishes a job again if the broker was down when it was accepted (the job waits in the
  store and runs once the broker is back), if its model's broker queue holds fewer messages than it has
  queued jobs (a message lost: Redis restarted without persistence, or taken and not run), or if it is
  still queued a visibility timeout later.
- A worker given another ``--storage`` than the server's (the message names another store) logs an
  error saying so and hands the message back to the broker, after a pause, for a worker of that storage.
- Duplicate deliveries are harmless: claiming is a guarded transaction, so a job already running on a
  live worker, or finished, is skipped. A job whose holder is a dead process of this host (a pool process
  killed mid-job: its message comes back at once) is taken over at once, not after the lease.
- Each running job records its holder's lease, and each worker its beat interval: the server waits for that,
  so a worker started with a longer ``--lease-seconds`` than the server's is never taken for dead.
- Attempts are bounded (``max_attempts``; then the job fails with the reason); store errors such as a
  locked database are retried by Celery a bounded number of times.

Limits: job state is one SQLite file, so every worker must run on the same host as the server, or
reach the storage directory through a file system with working POSIX locks and shared memory
(SQLite WAL does not work over NFS/SMB). Across hosts, put the state in a network database instead.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from typing import Any, NoReturn

from celery import Celery, signals
from celery.exceptions import Reject

from sampleforge.errors import SampleforgeError
from sampleforge.serve.config import SETTINGS_KEY, ServeConfig
from sampleforge.serve.job import RUNNING
from sampleforge.serve.jobstore import JobStore
from sampleforge.serve.results import ResultFiles
from sampleforge.serve.runner import GeneratorLike, JobRunner

log = logging.getLogger("sampleforge.serve")

TASK_NAME = "sampleforge.generate"


def queue_name(model: str) -> str:
    """The broker queue of one model: workers only take jobs for the model they loaded."""
    return "sampleforge." + re.sub(r"[^A-Za-z0-9_.-]", "_", model)[:100]


def make_celery(broker: str, config: ServeConfig) -> Celery:
    """A Celery app talking to ``broker`` with the delivery settings above (server and worker alike)."""
    app = Celery("sampleforge", broker=broker, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": config.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )

    @app.task(name=TASK_NAME, bind=True, max_retries=5, acks_late=True, reject_on_worker_lost=True)
    def generate(self: Any, job_id: str, storage: str | None = None) -> list[str]:
        """Run the batch led by ``job_id`` (a no-op if another worker has it or it is finished) of the store
        ``storage`` (its id; None: a message of a server that did not say)."""
        ctx = WORKER
        if ctx is None:
            raise RuntimeError("sampleforge.generate runs only inside `sampleforge worker`")
        if storage is not None and storage != ctx.store.storage_id:
            ctx.hand_back(job_id)
        if storage is None and not ctx.store.has(job_id):
            log.warning(f"job {job_id} is not in this worker's store: deleted, or the worker's --storage "
                        f"{ctx.files.root} is not the server's", extra={"event": "job_unknown", "job": job_id})
        try:
            ctx.take_from_dead_holder(job_id)
            return ctx.runner().run_once(leader=job_id)
        except sqlite3.OperationalError as exc:  # e.g. "database is locked" under heavy contention
            raise self.retry(exc=exc, countdown=1.0) from exc

    return app


class WorkerContext:
    """What a worker process holds: the job store, the result files, and (per process) the model and a runner."""

    def __init__(self, config: ServeConfig, load_generator: Any) -> None:
        self.config = config
        self.files = ResultFiles(config.storage, durable=config.durable)
        self.store = JobStore(self.files.db_path, durable=config.durable)
        self._load_generator = load_generator
        self._generator: GeneratorLike | None = None
        self._pid: int | None = None
        self._runners: dict[int, JobRunner] = {}
        self._lock = threading.Lock()

    def refuse_embedded_storage(self) -> None:
        """A SampleforgeError when an embedded ``sampleforge serve`` holds this storage (its lock, exclusively): its
        own threads run its jobs, and no broker message names them, so this worker would wait for nothing."""
        if not self.files.lock_free(exclusive=False):
            raise SampleforgeError(
                f"storage {self.files.root} is used by a `sampleforge serve` without --broker (embedded mode), "
                "whose own threads run its jobs; give this worker the --storage of a `serve --broker`")

    def hand_back(self, job_id: str) -> NoReturn:
        """Refuse a message of another store's job: say so, wait a little (a worker of the right storage may take
        it meanwhile; this one does not spin on it), and give it back to the broker unacknowledged (Reject)."""
        log.error(f"job {job_id} comes from another storage than this worker's --storage {self.files.root}; "
                  "give the worker the server's --storage (handed back to the broker)",
                  extra={"event": "job_from_other_storage", "job": job_id, "storage": str(self.files.root)})
        time.sleep(min(5.0, self.config.heartbeat_seconds))
        raise Reject("job from another storage", requeue=True)

    def take_from_dead_holder(self, job_id: str) -> None:
        """A running job whose holder is a dead process of this host (a pool process killed mid-job; Celery hands
        its message back at once) goes back to the queue now (or fails, its attempts spent), not a lease later."""
        from sampleforge.serve.worker import holder_is_dead

        job = self.store.get(job_id)
        if job is None or job.state != RUNNING or not job.worker or not holder_is_dead(job.worker):
            return
        state = self.store.take_from_dead(job_id, job.worker, self.config.max_attempts)
        if state is not None:
            log.warning(f"job {job_id}: its worker process {job.worker} is dead; taken over at once",
                        extra={"event": "job_holder_dead", "job": job_id, "holder": job.worker, "state": state})

    def check_server_settings(self) -> None:
        """Log one line for each setting this worker was given otherwise than the server recorded in the store
        (nothing breaks: the server waits for each worker's own lease, but attempts and batches follow the flags)."""
        server = self.store.get_meta(SETTINGS_KEY)
        if not isinstance(server, dict):
            return
        for flag, mine in self.config.shared_settings().items():
            theirs = server.get(flag)
            if theirs is not None and float(theirs) != float(mine):
                log.warning(f"the server uses {flag} {theirs:g}, this worker {mine:g}; give both the same",
                            extra={"event": "settings_differ", "flag": flag, "server": theirs, "worker": mine})

    def generator(self) -> GeneratorLike:
        """The model, loaded once per process (a forked pool child loads its own)."""
        with self._lock:
            if self._generator is None or self._pid != os.getpid():
                self._generator, self._pid, self._runners = self._load_generator(), os.getpid(), {}
            return self._generator

    def runner(self) -> JobRunner:
        """One JobRunner (one worker identity) per thread of this process."""
        from sampleforge.serve.worker import worker_identity

        gen = self.generator()
        key = threading.get_ident()
        with self._lock:
            if key not in self._runners:
                self._runners[key] = JobRunner(self.store, self.files, gen, self.config, worker_identity("celery"))
            return self._runners[key]


WORKER: WorkerContext | None = None


class _LivenessBeat:
    """Tells the store this worker process is alive (shown by /v1/health)."""

    def __init__(self, ctx: WorkerContext, model: str) -> None:
        from sampleforge.serve.worker import worker_identity

        self.ctx, self.id = ctx, worker_identity("celery")
        self.info = {"kind": "celery", "model": model, "pid": os.getpid(), "beat_s": ctx.config.heartbeat_seconds}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sampleforge-liveness")

    def start(self) -> None:
        self.ctx.store.beat_worker(self.id, self.info)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.ctx.store.forget_worker(self.id)

    def _loop(self) -> None:
        while not self._stop.wait(self.ctx.config.heartbeat_seconds):
            try:
                self.ctx.store.beat_worker(self.id, self.info)
            except sqlite3.Error:
                log.exception("liveness beat failed", extra={"event": "liveness_error"})


def run_worker(config: ServeConfig, load_generator: Any, pool: str = "solo", concurrency: int = 1) -> int:
    """Serve ``sampleforge.generate`` tasks for one model until stopped (SIGTERM: finish the task, exit)."""
    global WORKER
    assert config.broker, "run_worker needs a broker URL"
    ctx = WorkerContext(config, load_generator)
    ctx.refuse_embedded_storage()
    ctx.check_server_settings()
    gen = ctx.generator() if pool != "prefork" else load_generator()  # fail fast on a bad model
    name = gen.name
    if pool == "prefork":
        del gen  # each pool process loads its own copy (safe with CUDA)
    WORKER = ctx
    app = make_celery(config.broker, config)
    beat = _LivenessBeat(ctx, name)
    signals.worker_ready.connect(lambda **_: beat.start(), weak=False)
    signals.worker_shutdown.connect(lambda **_: beat.stop(), weak=False)
    log.info("worker starting", extra={"event": "worker_start", "model": name, "queue": queue_name(name),
                                       "pool": pool, "concurrency": concurrency})
    argv = ["--quiet", "worker", "--pool", pool, "--concurrency", str(concurrency), "--queues", queue_name(name),
            "--without-gossip", "--without-mingle", "--loglevel", "INFO", "--hostname", f"sampleforge-{os.getpid()}@%h"]
    app.worker_main(argv=argv)
    return 0
