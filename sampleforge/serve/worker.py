"""The embedded worker pool: threads in the server process that run the job function.

Generation is torch, which already spreads one batch over every core, so on a CPU one worker per
model is right (more threads only fight for the same cores; batching is what raises throughput).
On a GPU a second worker can overlap file writing with sampling. Scale beyond one machine with
``--broker`` (see celery_app.py).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from sampleforge.serve.config import ServeConfig
from sampleforge.serve.jobstore import JobStore
from sampleforge.serve.results import ResultFiles
from sampleforge.serve.runner import GeneratorLike, JobRunner

log = logging.getLogger("sampleforge.serve")


def worker_identity(kind: str) -> str:
    """A worker id unique across hosts, processes and restarts: ``kind@host:pid:random``, where ``host`` is the
    host name and, on Linux, the process-id namespace (``name/4026531836``)."""
    return f"{kind}@{process_space()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def process_space() -> str:
    """Where this process's id means this process: the host name, and on Linux the inode of its process-id
    namespace, so that containers that share a host name but not their process ids are told apart."""
    try:
        return f"{socket.gethostname()}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return socket.gethostname()


def holder_is_dead(worker: str) -> bool:
    """True if ``worker`` (a worker_identity) names a process of this host and process-id namespace that no
    longer exists: a pool process killed mid-job, whose job need not wait for its lease. False when unsure
    (another host or container, a live process, an id of another shape)."""
    _, _, where = worker.partition("@")
    parts = where.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != process_space() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid() or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


class WorkerPool:
    """``n`` threads, each looping: claim a batch, run it, wait to be woken (or poll every second)."""

    def __init__(self, store: JobStore, files: ResultFiles, generator: GeneratorLike, config: ServeConfig) -> None:
        self.store, self.files, self.generator, self.config = store, files, generator, config
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._pending = 0
        self._threads: list[threading.Thread] = []
        self._ids: list[str] = []

    def start(self) -> None:
        for i in range(self.config.workers):
            wid = worker_identity("thread")
            t = threading.Thread(target=self._loop, args=(wid,), daemon=True, name=f"sampleforge-worker-{i}")
            self._ids.append(wid)
            self._threads.append(t)
            t.start()

    def notify(self) -> None:
        """A job was queued: wake one idle worker now instead of at its next poll."""
        with self._wake:
            self._pending += 1
            self._wake.notify()

    def alive(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask workers to stop: a running batch goes back to the queue at its next step."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout)
        for wid in self._ids:
            self.store.forget_worker(wid)

    def _loop(self, wid: str) -> None:
        runner = JobRunner(self.store, self.files, self.generator, self.config, wid, stop=self._stop)
        info = {"kind": "thread", "model": self.generator.name, "pid": os.getpid(),
                "beat_s": self.config.heartbeat_seconds}
        while not self._stop.is_set():
            try:
                self.store.beat_worker(wid, info)
                ran = runner.run_once()
            except Exception:  # a store error (disk full...) must not kill the thread; retry after a pause
                log.exception("worker loop error", extra={"event": "worker_error", "worker": wid})
                self._stop.wait(1.0)
                continue
            if ran:
                continue
            with self._wake:
                if self._pending == 0 and not self._stop.is_set():
                    self._wake.wait(timeout=min(1.0, self.config.heartbeat_seconds))
                self._pending = max(0, self._pending - 1)
