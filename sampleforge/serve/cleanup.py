"""TTL clean-up: delete finished jobs (row and audio) once they are older than their TTL.

Never touches a queued or running job, nor a finished one younger than its TTL: the store re-checks
both conditions inside the deleting transaction, so a job cannot change under the sweep.
"""

from __future__ import annotations

import logging
import threading
import time

from sampleforge.serve.jobstore import JobStore
from sampleforge.serve.results import ResultFiles

log = logging.getLogger("sampleforge.serve")


def sweep(store: JobStore, files: ResultFiles, orphan_age_s: float, now: float | None = None) -> list[str]:
    """Delete expired jobs, result folders with no job row older than ``orphan_age_s``, and attempt folders
    untouched as long (their worker died before finishing the job). Returns the ids of the deleted jobs."""
    now = time.time() if now is None else now
    deleted = []
    for job_id in store.expired(now):
        if store.delete_expired(job_id, now):
            files.delete(job_id)
            deleted.append(job_id)
    for job_id in files.orphans(store.has, orphan_age_s):
        files.delete(job_id)
        deleted.append(job_id)
    files.delete_stale_attempts(orphan_age_s)
    if deleted:
        log.info("ttl clean-up", extra={"event": "ttl_cleanup", "deleted": len(deleted)})
    return deleted


class Janitor:
    """A daemon thread running ``sweep`` every ``interval_s`` seconds."""

    def __init__(self, store: JobStore, files: ResultFiles, interval_s: float, orphan_age_s: float) -> None:
        self.store, self.files = store, files
        self.interval_s, self.orphan_age_s = interval_s, orphan_age_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sampleforge-janitor")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                sweep(self.store, self.files, self.orphan_age_s)
            except Exception:
                log.exception("ttl clean-up failed", extra={"event": "ttl_cleanup_error"})
