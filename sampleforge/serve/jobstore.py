"""The job store: every accepted job is a row in SQLite (WAL) before the client hears "202".

One file, shared by the server and by every worker process on the host. All state changes (see job.py) are
guarded ``UPDATE ... WHERE state = ...`` statements, so two processes can never both finish, or both start,
a job. A running job carries the id of the worker that holds it and a heartbeat time; a job whose heartbeat is
older than the lease is considered abandoned (its worker died) and may be claimed again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sampleforge.errors import UserInputError
from sampleforge.serve.job import (
    ACTIVE,
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    Job,
    params_from_json,
    params_to_json,
)

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
    heartbeat_at  REAL,
    published_at  REAL,                     -- celery mode: last hand-off to the broker (NULL: not yet)
    request       TEXT,                     -- JSON: a workflow job's operation and inputs (NULL: generation)
    lease_s       REAL                      -- the lease its holder keeps (it beats every lease / 4; NULL: none)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created_at);
CREATE TABLE IF NOT EXISTS workers (
    id         TEXT PRIMARY KEY,
    info       TEXT NOT NULL,
    last_seen  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),   -- one row, rewritten by the readiness check
    at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,                -- storage_id: a random id naming this store in broker messages;
    value  TEXT NOT NULL                    -- server_settings: JSON, the --broker server's lease, attempts, batch
);
"""
# columns added after the first release: (name, declaration) added to older databases at open
MIGRATIONS = (("published_at", "REAL"), ("request", "TEXT"), ("lease_s", "REAL"))


class QueueFull(Exception):
    """The queue holds ``max_queue`` active jobs; the client should retry later."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"queue is full ({depth} jobs queued or running)")
        self.depth = depth


_JSON_COLUMNS = ("warnings", "results", "request")


def _row_to_job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data.pop("batch_key")  # derived from the params; stored so that claim can select on it
    data.pop("lease_s", None)  # the holder's lease: only the store's own stale checks read it
    for key in _JSON_COLUMNS:
        data[key] = json.loads(data[key]) if data[key] is not None else None
    data["params"] = params_from_json(data["params"], data["prompt"])
    return Job(**data)


def _job_to_row(job: Job) -> dict[str, Any]:
    row = {k: v for k, v in job.__dict__.items()}
    for key in _JSON_COLUMNS:
        row[key] = json.dumps(row[key]) if row[key] is not None else None
    row["params"], row["batch_key"] = params_to_json(job.params), job.batch_key
    return row


def not_a_job_database(path: Path, exc: Exception) -> UserInputError:
    """The one-line refusal of a ``jobs.sqlite3`` that SQLite cannot open (``exc`` says why)."""
    return UserInputError(f"{path}: cannot open it as the job database ({exc}); move it away, or give another "
                          "--storage")


def check_database(path: Path) -> None:
    """A UserInputError when the job database ``path`` exists and is not one SQLite can open (another file by its
    name, a folder), read-only, without making or changing anything: a command says so before loading a model."""
    if not path.exists():
        return
    if path.is_dir():
        raise UserInputError(f"{path}: a folder where the job database goes; move it away, or give another --storage")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise not_a_job_database(path, exc) from None


def _requeue_or_fail(db: sqlite3.Connection, job_id: str, attempts: int, max_attempts: int, now: float,
                     republish: bool = False) -> bool:
    """An interrupted running job: back to queued (True), or failed with the reason once ``max_attempts`` are
    spent (False), so a job that kills its worker every time ends. ``republish``: its message is gone (hand it
    to the broker again)."""
    if attempts >= max_attempts:
        db.execute("UPDATE jobs SET state = ?, error = ?, finished_at = ?, worker = NULL WHERE id = ?",
                   (FAILED, f"interrupted {attempts} times (the worker died or the server restarted mid-job); "
                    f"giving up after {max_attempts} attempts", now, job_id))
        return False
    sql = "UPDATE jobs SET state = ?, worker = NULL, progress = 0" + (", published_at = NULL" if republish else "")
    db.execute(sql + " WHERE id = ?", (QUEUED, job_id))
    return True


class JobStore:
    """SQLite-backed jobs and worker heartbeats; safe across threads and processes on one host."""

    def __init__(self, path: str | Path, durable: bool = True) -> None:
        """``durable``: ``synchronous=FULL`` (each commit reaches the disk: survives power loss); False:
        ``NORMAL`` (WAL: survives a crash of the process, may lose the last commits on power loss)."""
        self.path = Path(path)
        self.durable = durable
        self.busy_timeout_s = 30.0  # how long a write waits for another writer's lock before failing
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            self.storage_id: str = self._open()
        except sqlite3.DatabaseError as exc:  # another file by its name, a folder, a damaged database
            raise not_a_job_database(self.path, exc) from None

    def _open(self) -> str:
        """Create or upgrade the schema; returns this store's id."""
        db = self._conn()
        db.executescript(SCHEMA)  # idempotent (IF NOT EXISTS); executescript commits itself
        have = {r[1] for r in db.execute("PRAGMA table_info(jobs)").fetchall()}
        for name, decl in MIGRATIONS:
            if name not in have:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {decl}")
        # names this store (the first process to open it chose it): the server puts it in each broker message,
        # so a worker given another --storage knows a job is not its own
        select = "SELECT value FROM meta WHERE key = 'storage_id'"
        if db.execute(select).fetchone() is None:  # written once: a store that refuses writes still opens
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('storage_id', ?)", (uuid.uuid4().hex,))
        return str(db.execute(select).fetchone()[0])

    # ---- connections -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # new thread, or a forked child
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")  # per transaction: _tx
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _tx(self, busy_timeout_s: float | None = None, ephemeral: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: takes the write lock up front, so no upgrade deadlocks),
        waiting at most ``busy_timeout_s`` (default: ``self.busy_timeout_s``) for another writer's lock.

        ``ephemeral``: a write worth no fsync (heartbeats, progress): committed with ``synchronous=NORMAL``
        even in a durable store; the next durable commit flushes it along (WAL order is kept)."""
        db = self._conn()
        db.execute(f"PRAGMA busy_timeout={int(1000 * (busy_timeout_s or self.busy_timeout_s))}")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durable and not ephemeral else 'NORMAL'}")
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
            row = _job_to_row(job)
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
        running job whose heartbeat is older than ``lease_s`` and than its holder's own lease (its worker died;
        a holder with a longer lease beats less often). Each claimed job records ``lease_s``, the lease this
        worker keeps. Jobs without a seed get one from ``new_seed(count) -> int``. Returns the claimed jobs
        (state running), oldest first.
        """
        now = time.time()
        with self._tx() as db:
            if leader is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE id = ? AND (state = ? OR (state = ? AND "
                    "heartbeat_at < ? - MAX(?, COALESCE(lease_s, 0))))",
                    (leader, QUEUED, RUNNING, now, lease_s),
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
                    "progress = 0, error = NULL, seed = ?, lease_s = ? WHERE id = ?",
                    (RUNNING, worker, job.attempts, now, now, job.seed, float(lease_s), job.id),
                )
        return batch

    def heartbeat(self, ids: Sequence[str], worker: str, progress: float | None = None) -> list[str]:
        """Renew the lease (and set progress) of the jobs ``worker`` still holds; returns those ids."""
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        now = time.time()
        with self._tx(ephemeral=True) as db:
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

    def finish(self, job_id: str, worker: str, results: list[dict[str, Any]], warnings: list[str] | None = None,
               publish: Callable[[], None] | None = None) -> bool:
        """running -> succeeded, only if ``worker`` still holds the job. False if it was cancelled or taken.
        ``warnings``: the job's warnings as the run found them (None: keep those set at submit).

        ``publish()`` (moving the attempt's files into place) runs inside the transaction, only if ``worker``
        holds the job: no other process can cancel or take the job meanwhile, so the files of a job are only
        ever replaced by the attempt that finishes it. If it raises, the job stays running."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE jobs SET state = ?, progress = 1, results = ?, finished_at = ?, worker = NULL, "
                "warnings = COALESCE(?, warnings) WHERE id = ? AND state = ? AND worker = ?",
                (SUCCEEDED, json.dumps(results), time.time(), None if warnings is None else json.dumps(warnings),
                 job_id, RUNNING, worker),
            )
            if cur.rowcount != 1:
                return False
            if publish is not None:
                publish()
            return True

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
                    "UPDATE jobs SET state = ?, worker = NULL, progress = 0, attempts = MAX(attempts - 1, 0), "
                    "published_at = NULL "
                    "WHERE id = ? AND state = ? AND worker = ?",
                    (QUEUED, job_id, RUNNING, worker),
                ).rowcount
        return n

    def requeue_abandoned(self, max_attempts: int, stale_before: float | None = None,
                          lease_s: float | None = None) -> tuple[list[str], list[str]]:
        """Running jobs whose worker is gone: back to queued, or failed once ``max_attempts`` are spent.

        ``lease_s``: only jobs whose heartbeat is older than this and than their holder's own lease (a worker
        started with a longer --lease-seconds beats less often: it is not dead until its own lease passed).
        ``stale_before``: only jobs whose heartbeat is older than this time. Neither: every running job (use that
        only when this process owns the store, e.g. at embedded start-up). Returns (requeued, failed).
        """
        requeued: list[str] = []
        failed: list[str] = []
        now = time.time()
        args: list[Any]
        with self._tx() as db:
            sql, args = "SELECT id, attempts FROM jobs WHERE state = ?", [RUNNING]
            if stale_before is not None:
                sql, args = sql + " AND heartbeat_at < ?", [*args, stale_before]
            if lease_s is not None:
                sql, args = sql + " AND heartbeat_at < ? - MAX(?, COALESCE(lease_s, 0))", [*args, now, lease_s]
            for job_id, attempts in db.execute(sql, args).fetchall():
                if _requeue_or_fail(db, job_id, attempts, max_attempts, now, republish=True):
                    requeued.append(job_id)
                else:
                    failed.append(job_id)
        return requeued, failed

    def take_from_dead(self, job_id: str, holder: str, max_attempts: int) -> str | None:
        """The running job ``holder`` (a process known to be dead) held: back to queued, or failed once
        ``max_attempts`` are spent, without waiting for its lease. Its broker message, being run, stays the job's
        hand-off. Returns the job's new state, or None if ``holder`` no longer holds it."""
        with self._tx() as db:
            row = db.execute("SELECT attempts FROM jobs WHERE id = ? AND state = ? AND worker = ?",
                             (job_id, RUNNING, holder)).fetchone()
            if row is None:
                return None
            return QUEUED if _requeue_or_fail(db, job_id, row[0], max_attempts, time.time()) else FAILED

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

    def probe_write(self, busy_timeout_s: float = 1.0) -> None:
        """One small write transaction; raises sqlite3.Error if the database refuses writes, or stays locked
        by another writer for ``busy_timeout_s`` (readiness)."""
        with self._tx(busy_timeout_s, ephemeral=True) as db:
            db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (time.time(),))

    # ---- celery hand-off ---------------------------------------------------------------------------
    def unpublished(self, older_than: float) -> list[str]:
        """Queued jobs never handed to the broker, or last handed over before ``older_than`` (oldest first)."""
        rows = self._conn().execute(
            "SELECT id FROM jobs WHERE state = ? AND (published_at IS NULL OR published_at < ?) ORDER BY created_at",
            (QUEUED, older_than),
        ).fetchall()
        return [r[0] for r in rows]

    def published_before(self, before: float) -> dict[str, list[str]]:
        """Queued jobs last handed to the broker before ``before``, by model (oldest first)."""
        rows = self._conn().execute(
            "SELECT id, model FROM jobs WHERE state = ? AND published_at < ? ORDER BY created_at", (QUEUED, before)
        ).fetchall()
        out: dict[str, list[str]] = {}
        for job_id, model in rows:
            out.setdefault(model, []).append(job_id)
        return out

    def queued_count(self, model: str) -> int:
        """How many jobs of ``model`` are queued."""
        row = self._conn().execute("SELECT COUNT(*) FROM jobs WHERE state = ? AND model = ?", (QUEUED, model))
        return int(row.fetchone()[0])

    def mark_published(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET published_at = ? WHERE id = ?", (time.time(), job_id))

    def has(self, job_id: str) -> bool:
        return self._conn().execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None

    # ---- worker liveness ---------------------------------------------------------------------------
    def beat_worker(self, worker: str, info: dict[str, Any]) -> None:
        with self._tx(ephemeral=True) as db:
            db.execute(
                "INSERT INTO workers (id, info, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen",
                (worker, json.dumps(info), time.time()),
            )

    def forget_worker(self, worker: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM workers WHERE id = ?", (worker,))

    def alive_workers(self, within_s: float) -> list[dict[str, Any]]:
        """Workers that sent a heartbeat in the last ``within_s`` seconds, or in the last 3 of their own beat
        intervals + 2 s (``beat_s`` in their info: a worker with a longer --lease-seconds beats less often):
        [{"id", "last_seen", **info}]."""
        now = time.time()
        rows = self._conn().execute("SELECT id, info, last_seen FROM workers ORDER BY id").fetchall()
        workers = [{"id": r[0], "last_seen": r[2], **json.loads(r[1])} for r in rows]
        return [w for w in workers if w["last_seen"] >= now - max(within_s, 3 * float(w.get("beat_s") or 0) + 2)]

    # ---- settings ----------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON) under ``key`` in the meta table."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str) -> Any:
        """The JSON value under ``key`` in the meta table (None: unset)."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])
