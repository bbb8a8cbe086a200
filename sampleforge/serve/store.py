"""The job store: every accepted job is a row in SQLite (WAL) before the client hears "202".

One file, shared by the server and by every worker process on the host. All state changes are guarded
``UPDATE ... WHERE state = ...`` statements, so two processes can never both finish, or both start, a job:

    queued --claim--> running --finish--> succeeded
       |                 |------fail----> failed
       |                 |--release/requeue--> queued      (shutdown, or a worker that died: attempts bounded)
       +--cancel---------+--cancel------> cancelled

A running job carries the id of the worker that holds it and a heartbeat time; a job whose heartbeat is
older than the lease is considered abandoned (its worker died) and may be claimed again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    model         TEXT NOT NULL,
    prompt        TEXT NOT NULL,
    params        TEXT NOT NULL,            -- JSON: count, steps, cfg_scale, sampler, seed, duration, format
    batch_key     TEXT NOT NULL,            -- jobs with equal keys may share one generate() call
    seed          INTEGER,                  -- the seed of clip 0 (clip k uses seed + k); set by submit or claim
    progress      REAL NOT NULL DEFAULT 0,
    warnings      TEXT NOT NULL DEFAULT '[]',
    results       TEXT NOT NULL DEFAULT '[]',
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    worker        TEXT,
    source        TEXT NOT NULL DEFAULT 'generate',
    client_ref    TEXT,
    ttl_s         REAL NOT NULL,
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    heartbeat_at  REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_at);
CREATE TABLE IF NOT EXISTS workers (
    id         TEXT PRIMARY KEY,
    info       TEXT NOT NULL,
    last_seen  REAL NOT NULL
);
"""


class QueueFull(Exception):
    """The queue holds ``max_queue`` active jobs; the client should retry later."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"queue is full ({depth} jobs queued or running)")
        self.depth = depth


@dataclass
class Job:
    """One row of the ``jobs`` table, decoded."""

    id: str
    state: str
    model: str
    prompt: str
    params: dict[str, Any]
    batch_key: str
    ttl_s: float
    created_at: float
    seed: int | None = None
    progress: float = 0.0
    warnings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    worker: str | None = None
    source: str = "generate"
    client_ref: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None

    @property
    def count(self) -> int:
        return int(self.params["count"])

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


_JSON_COLUMNS = ("params", "warnings", "results")


def _row_to_job(row: sqlite3.Row) -> Job:
    data = dict(row)
    for key in _JSON_COLUMNS:
        data[key] = json.loads(data[key])
    return Job(**data)


class JobStore:
    """SQLite-backed jobs and worker heartbeats; safe across threads and processes on one host."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(SCHEMA)  # idempotent (IF NOT EXISTS); executescript commits itself

    # ---- connections -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # new thread, or a forked child
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front, so no upgrade deadlocks)."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- submit and read ---------------------------------------------------------------------------
    def submit(self, job: Job, max_active: int | None = None) -> Job:
        """Insert ``job`` (state queued). Raises QueueFull if ``max_active`` jobs are queued or running."""
        with self._tx() as db:
            if max_active is not None:
                depth = db.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", ACTIVE).fetchone()[0]
                if depth >= max_active:
                    raise QueueFull(depth)
            row = {k: v for k, v in job.__dict__.items()}
            for key in _JSON_COLUMNS:
                row[key] = json.dumps(row[key])
            cols = ", ".join(row)
            db.execute(f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        return job

    def get(self, job_id: str) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def get_many(self, ids: Sequence[str]) -> list[Job]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        rows = self._conn().execute(f"SELECT * FROM jobs WHERE id IN ({marks})", tuple(ids)).fetchall()
        return [_row_to_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Number of jobs per state (every state present, zero if none)."""
        rows = self._conn().execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        out = dict.fromkeys((*ACTIVE, *TERMINAL), 0)
        out.update({r[0]: r[1] for r in rows})
        return out

    def ids_in_state(self, state: str) -> list[str]:
        rows = self._conn().execute("SELECT id FROM jobs WHERE state = ? ORDER BY created_at", (state,))
        return [r[0] for r in rows.fetchall()]

    def queue_position(self, job: Job) -> int:
        """How many queued jobs were accepted before ``job`` (0: next in line)."""
        row = self._conn().execute(
            "SELECT COUNT(*) FROM jobs WHERE state = ? AND created_at < ?", (QUEUED, job.created_at)
        ).fetchone()
        return int(row[0])

    def mean_run_seconds(self, last: int = 20) -> float | None:
        """Mean wall time of the last ``last`` succeeded jobs (for Retry-After estimates), or None."""
        row = self._conn().execute(
            "SELECT AVG(d) FROM (SELECT finished_at - started_at AS d FROM jobs WHERE state = ? "
            "AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?)",
            (SUCCEEDED, last),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # ---- the worker side ---------------------------------------------------------------------------
    def claim(
        self,
        worker: str,
        max_clips: int,
        lease_s: float,
        leader: str | None = None,
        model: str | None = None,
        new_seed: Any = None,
    ) -> list[Job]:
        """Take a batch: the leader (or the oldest queued job) plus queued jobs with the same batch key.

        The batch holds at most ``max_clips`` clips (the leader always fits). A leader may also be a
        running job whose heartbeat is older than ``lease_s`` (its worker died). Jobs without a seed get
        one from ``new_seed(count) -> int``. Returns the claimed jobs (state running), oldest first.
        """
        now = time.time()
        with self._tx() as db:
            if leader is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE id = ? AND (state = ? OR (state = ? AND heartbeat_at < ?))",
                    (leader, QUEUED, RUNNING, now - lease_s),
                ).fetchone()
            else:
                sql = "SELECT * FROM jobs WHERE state = ?" + (" AND model = ?" if model else "")
                args: tuple[Any, ...] = (QUEUED, model) if model else (QUEUED,)
                row = db.execute(sql + " ORDER BY created_at LIMIT 1", args).fetchone()
            if row is None:
                return []
            first = _row_to_job(row)
            batch, clips = [first], first.count
            if clips < max_clips:
                rows = db.execute(
                    "SELECT * FROM jobs WHERE state = ? AND batch_key = ? AND model = ? AND id != ? "
                    "ORDER BY created_at LIMIT ?",
                    (QUEUED, first.batch_key, first.model, first.id, max_clips),
                ).fetchall()
                for r in rows:
                    job = _row_to_job(r)
                    if clips + job.count <= max_clips:
                        batch.append(job)
                        clips += job.count
            for job in batch:
                if job.seed is None and new_seed is not None:
                    job.seed = int(new_seed(job.count))
                job.state, job.worker, job.attempts = RUNNING, worker, job.attempts + 1
                job.started_at, job.heartbeat_at, job.progress, job.error = now, now, 0.0, None
                db.execute(
                    "UPDATE jobs SET state = ?, worker = ?, attempts = ?, started_at = ?, heartbeat_at = ?, "
                    "progress = 0, error = NULL, seed = ? WHERE id = ?",
                    (RUNNING, worker, job.attempts, now, now, job.seed, job.id),
                )
        return batch

    def heartbeat(self, ids: Sequence[str], worker: str, progress: float | None = None) -> list[str]:
        """Renew the lease (and set progress) of the jobs ``worker`` still holds; returns those ids."""
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        now = time.time()
        with self._tx() as db:
            if progress is None:
                db.execute(
                    f"UPDATE jobs SET heartbeat_at = ? WHERE worker = ? AND state = ? AND id IN ({marks})",
                    (now, worker, RUNNING, *ids),
                )
            else:
                db.execute(
                    f"UPDATE jobs SET heartbeat_at = ?, progress = ? WHERE worker = ? AND state = ? "
                    f"AND id IN ({marks})",
                    (now, float(progress), worker, RUNNING, *ids),
                )
            rows = db.execute(
                f"SELECT id FROM jobs WHERE worker = ? AND state = ? AND id IN ({marks})", (worker, RUNNING, *ids)
            ).fetchall()
        return [r[0] for r in rows]

    def finish(self, job_id: str, worker: str, results: list[dict[str, Any]]) -> bool:
        """running -> succeeded, only if ``worker`` still holds the job. False if it was cancelled or taken."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, progress = 1, results = ?, finished_at = ?, worker = NULL "
                "WHERE id = ? AND state = ? AND worker = ?",
                (SUCCEEDED, json.dumps(results), time.time(), job_id, RUNNING, worker),
            )
            return cur.rowcount == 1

    def fail(self, job_id: str, worker: str | None, error: str) -> bool:
        """running -> failed with ``error`` (only if ``worker`` holds it; None: whoever holds it)."""
        with self._tx() as db:
            sql = "UPDATE jobs SET state = ?, error = ?, finished_at = ?, worker = NULL WHERE id = ? AND state = ?"
            args: tuple[Any, ...] = (FAILED, error, time.time(), job_id, RUNNING)
            if worker is not None:
                sql, args = sql + " AND worker = ?", (*args, worker)
            return db.execute(sql, args).rowcount == 1

    def release(self, ids: Sequence[str], worker: str) -> int:
        """running -> queued without spending an attempt (the worker is shutting down cleanly)."""
        n = 0
        with self._tx() as db:
            for job_id in ids:
                n += db.execute(
                    "UPDATE jobs SET state = ?, worker = NULL, progress = 0, attempts = MAX(attempts - 1, 0) "
                    "WHERE id = ? AND state = ? AND worker = ?",
                    (QUEUED, job_id, RUNNING, worker),
                ).rowcount
        return n

    def requeue_abandoned(self, max_attempts: int, stale_before: float | None = None) -> tuple[list[str], list[str]]:
        """Running jobs whose worker is gone: back to queued, or failed once ``max_attempts`` are spent.

        ``stale_before``: only jobs whose heartbeat is older than this time (None: every running job — use
        that only when this process owns the store, e.g. at embedded start-up). Returns (requeued, failed).
        """
        requeued: list[str] = []
        failed: list[str] = []
        now = time.time()
        with self._tx() as db:
            sql, args = "SELECT id, attempts FROM jobs WHERE state = ?", (RUNNING,)
            if stale_before is not None:
                sql, args = sql + " AND heartbeat_at < ?", (RUNNING, stale_before)  # type: ignore[assignment]
            for job_id, attempts in db.execute(sql, args).fetchall():
                if attempts >= max_attempts:
                    db.execute(
                        "UPDATE jobs SET state = ?, error = ?, finished_at = ?, worker = NULL WHERE id = ?",
                        (FAILED, f"interrupted {attempts} times (the worker died or the server restarted "
                         f"mid-job); giving up after {max_attempts} attempts", now, job_id),
                    )
                    failed.append(job_id)
                else:
                    db.execute(
                        "UPDATE jobs SET state = ?, worker = NULL, progress = 0 WHERE id = ?", (QUEUED, job_id)
                    )
                    requeued.append(job_id)
        return requeued, failed

    def cancel(self, job_id: str) -> bool:
        """queued|running -> cancelled. A running job's worker notices at its next progress step."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, worker = NULL, error = 'cancelled by the client' "
                "WHERE id = ? AND state IN (?, ?)",
                (CANCELLED, time.time(), job_id, *ACTIVE),
            )
            return cur.rowcount == 1

    def delete(self, job_id: str, only_terminal: bool = True) -> bool:
        """Remove the row (only a finished job unless ``only_terminal`` is False)."""
        with self._tx() as db:
            sql = "DELETE FROM jobs WHERE id = ?"
            args: tuple[Any, ...] = (job_id,)
            if only_terminal:
                sql, args = sql + " AND state IN (?, ?, ?)", (job_id, *TERMINAL)
            return db.execute(sql, args).rowcount == 1

    def expired(self, now: float | None = None) -> list[str]:
        """Finished jobs older than their TTL (``finished_at + ttl_s <= now``); never queued or running."""
        now = time.time() if now is None else now
        rows = self._conn().execute(
            "SELECT id FROM jobs WHERE state IN (?, ?, ?) AND finished_at IS NOT NULL AND finished_at + ttl_s <= ?",
            (*TERMINAL, now),
        ).fetchall()
        return [r[0] for r in rows]

    def delete_expired(self, job_id: str, now: float | None = None) -> bool:
        """Delete ``job_id`` only if it is still finished and expired (re-checked inside the transaction)."""
        now = time.time() if now is None else now
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM jobs WHERE id = ? AND state IN (?, ?, ?) AND finished_at + ttl_s <= ?",
                (job_id, *TERMINAL, now),
            )
            return cur.rowcount == 1

    def has(self, job_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    # ---- worker liveness ---------------------------------------------------------------------------
    def beat_worker(self, worker: str, info: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO workers (id, info, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen",
                (worker, json.dumps(info), time.time()),
            )

    def forget_worker(self, worker: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM workers WHERE id = ?", (worker,))

    def alive_workers(self, within_s: float) -> list[dict[str, Any]]:
        """Workers that sent a heartbeat in the last ``within_s`` seconds: [{"id", "last_seen", **info}]."""
        rows = self._conn().execute(
            "SELECT id, info, last_seen FROM workers WHERE last_seen >= ? ORDER BY id", (time.time() - within_s,)
        ).fetchall()
        return [{"id": r[0], "last_seen": r[2], **json.loads(r[1])} for r in rows]
