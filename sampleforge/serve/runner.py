"""The job function: claim a batch of compatible jobs, generate their clips in few calls, store the audio
(a workflow job, a variation, morph or kit, runs alone through operations.py).

The same function runs in the server's worker threads (embedded mode) and inside a Celery task on
``sampleforge worker`` processes (scale-out). It is safe to run twice for the same job (a redelivered
task): the store's guarded transitions let exactly one worker hold a job at a time. Each attempt writes its
files in its own folder and moves them into the job's only as it finishes the job (results.StagedFiles), so a
worker that stalled past its lease while another finished the job leaves that job's files alone.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from sampleforge.api import provenance
from sampleforge.audio.finish import apply_length, parse_length
from sampleforge.backends.base import Generation
from sampleforge.errors import ConfigError, SampleforgeError
from sampleforge.params import MAX_SEED, GenerationParams
from sampleforge.pipeline import candidates_note
from sampleforge.serve import operations
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.job import CANCELLED, Job
from sampleforge.serve.jobstore import JobStore
from sampleforge.serve.logs import error_ref, without_folders
from sampleforge.serve.results import ResultFiles, ResultWriteError, StagedFiles
from sampleforge.serve.views import download_name

log = logging.getLogger("sampleforge.serve")

WRITE_SHARE = 0.05  # progress fraction reserved for writing files after sampling
WRITE_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # seconds between attempts to store a job's files (disk full...)
USER_ERRORS = (SampleforgeError, ConfigError)  # errors whose message is written for users (errors.py)


class GeneratorLike(Protocol):
    """What the service needs from ``sampleforge.pipeline.Generator``."""

    name: str
    sample_rate: int

    samplers: tuple[str, ...]  # the ones that fit the model; the first is its default

    def resolve(self, params: GenerationParams) -> GenerationParams: ...

    def vocab(self) -> dict[str, int]: ...

    def check_prompt(self, prompt: str) -> list[str]: ...

    def settings_warnings(self, p: GenerationParams) -> list[str]: ...

    def generate_full(
        self,
        prompts: str | list[str],
        n: int | None = None,
        *,
        callback: Callable[[int, int], None] | None = None,
        params: GenerationParams | None = None,
        **settings: Any,
    ) -> Generation: ...

    def judges_know(self, prompt: str) -> bool: ...


def job_error(exc: Exception, jobs: Sequence[str]) -> str:
    """The ``error`` of jobs that ``exc`` failed (the API shows it), logged. An error meant for users (sampleforge's
    own, ``errors.py``: a bad value the request checks let through, a model that does not load) keeps its message,
    with the server's folders taken out of the paths it names (``without_folders``); anything else may hold
    internals, so the job says "internal error" with a short reference and the log has the
    traceback under that reference."""
    if isinstance(exc, USER_ERRORS):
        log.warning("batch failed", extra={"event": "batch_failed", "jobs": list(jobs), "error": str(exc)})
        return without_folders(str(exc))
    ref = error_ref()
    log.error("batch crashed", exc_info=exc, extra={"event": "batch_crashed", "jobs": list(jobs), "ref": ref})
    return f"internal error while running the job (ref {ref})"


class Cancelled(Exception):
    """Every job of the running batch was cancelled: stop sampling."""


class ShuttingDown(Exception):
    """The worker is stopping: hand the batch back to the queue."""


def _seed_allocator() -> Callable[[int], int]:
    """Seeds for unseeded jobs of one batch, contiguous so their clips form one run (one generate call)."""
    nxt = random.randrange(0, MAX_SEED - 2**20)

    def take(count: int) -> int:
        nonlocal nxt
        seed, nxt = nxt, nxt + count
        return seed

    return take


@dataclass
class Clip:
    job: Job
    index: int  # clip index within its job
    prompt: str
    seed: int


def _clips(jobs: Sequence[Job]) -> list[Clip]:
    return [Clip(j, k, j.prompt, int(j.seed or 0) + k) for j in jobs for k in range(j.count)]


def _runs(clips: list[Clip], max_len: int) -> list[list[Clip]]:
    """Split clips into runs of at most ``max_len`` consecutive seeds: one generate(prompts, seed=first) call each.

    Generator.generate gives clip k of a call the seed ``seed + k``, and a batch equals one-by-one
    generation, so a run reproduces exactly what each job would get on its own.
    """
    runs: list[list[Clip]] = []
    for clip in clips:
        if runs and runs[-1][-1].seed + 1 == clip.seed and len(runs[-1]) < max_len:
            runs[-1].append(clip)
        else:
            runs.append([clip])
    return runs


class JobRunner:
    """Runs batches for one worker identity (a thread in the server, or a Celery worker process)."""

    def __init__(
        self,
        store: JobStore,
        files: ResultFiles,
        generator: GeneratorLike,
        config: ServeConfig,
        worker_id: str,
        stop: threading.Event | None = None,
    ) -> None:
        self.store, self.files, self.generator, self.config = store, files, generator, config
        self.worker_id = worker_id
        self.stop = stop or threading.Event()

    def run_once(self, leader: str | None = None) -> list[str]:
        """Claim and run one batch (led by ``leader`` if given). Returns the ids claimed ([] if none)."""
        jobs = self.store.claim(
            self.worker_id,
            self.config.max_batch,
            self.config.lease_seconds,
            leader=leader,
            model=self.generator.name,
            new_seed=_seed_allocator(),
        )
        if not jobs:
            return []
        ids = [j.id for j in jobs]
        log.info("batch started", extra={"event": "batch_start", "jobs": ids, "worker": self.worker_id,
                                         "clips": sum(j.count for j in jobs)})
        started = time.monotonic()
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._beat, args=(ids, beat_stop), daemon=True, name="job-heartbeat")
        beat.start()
        try:
            if jobs[0].request is not None:  # a workflow job: always alone in its batch
                self._run_operation(jobs[0])
            else:
                self._run(jobs)
        except Cancelled:
            log.info("batch cancelled", extra={"event": "batch_cancelled", "jobs": ids})
        except ShuttingDown:
            n = self.store.release(ids, self.worker_id)
            log.info("batch handed back", extra={"event": "batch_released", "jobs": ids, "released": n})
        except ResultWriteError as exc:  # the disk still failing after the retries, or audio it cannot take
            for job_id in ids:
                self.store.fail(job_id, self.worker_id, f"could not store the audio: {exc}")
            log.error("batch not stored", extra={"event": "batch_write_failed", "jobs": ids, "error": str(exc)})
        except Exception as exc:
            error = job_error(exc, ids)
            for job_id in ids:
                self.store.fail(job_id, self.worker_id, error)
        finally:
            beat_stop.set()
            beat.join()
        log.info("batch done", extra={"event": "batch_done", "jobs": ids,
                                      "seconds": round(time.monotonic() - started, 3)})
        return ids

    def _beat(self, ids: list[str], done: threading.Event) -> None:
        """Renew the lease of the batch's jobs while it runs (a slow step must not look like a dead worker)."""
        while not done.wait(self.config.heartbeat_seconds):
            try:
                self.store.heartbeat(ids, self.worker_id)
            except Exception:  # the next beat retries; a missed beat only shortens the lease
                log.exception("heartbeat failed", extra={"event": "heartbeat_failed"})

    def _reporter(self, held: list[str]) -> Callable[[float, bool], None]:
        """``report(fraction, final)`` while sampling: stop for a shutdown (ShuttingDown) or when every held job
        was cancelled (Cancelled); the progress reaches the store at most every 0.25 s, and at the end."""
        last = [0.0]

        def report(frac: float, final: bool) -> None:
            if self.stop.is_set():
                raise ShuttingDown()
            now = time.monotonic()
            if now - last[0] < 0.25 and not final:
                return
            last[0] = now
            if not self.store.heartbeat(held, self.worker_id, progress=frac * (1 - WRITE_SHARE)):
                raise Cancelled()

        return report

    def _run(self, jobs: list[Job]) -> None:
        p = jobs[0].params  # a batch shares every setting but prompt, count, seed and format (its batch key)
        clips = sorted(_clips(jobs), key=lambda c: (c.job.params.seed is None, c.seed))
        runs = _runs(clips, self.config.max_batch)
        total = len(clips)
        report = self._reporter([j.id for j in jobs])
        done = 0

        def on_step(run_len: int) -> Callable[[int, int], None]:
            def callback(step: int, steps: int) -> None:
                report((done + run_len * step / max(steps, 1)) / total, step >= steps)

            return callback

        wavs: dict[tuple[str, int], Tensor] = {}
        kept: dict[tuple[str, int], int | None] = {}  # with candidates: the one each clip kept
        ran = p  # the settings as the model resolved them (duration, precision)
        for run in runs:
            with torch.inference_mode():
                out = self.generator.generate_full(
                    [c.prompt for c in run], n=1, params=p, seed=run[0].seed, callback=on_step(len(run))
                )  # audio (len(run), samples)
            if out.audio.shape[0] != len(run):
                raise RuntimeError(f"generator returned {out.audio.shape[0]} clips for {len(run)} prompts")
            ran = out.params
            for i, (c, wav) in enumerate(zip(run, out.audio, strict=True)):
                wavs[(c.job.id, c.index)] = wav.detach().float().cpu()
                if out.candidates is not None:
                    kept[(c.job.id, c.index)] = out.candidates[i]
            done += len(run)
        for job in jobs:
            clips_of_job = [wavs[(job.id, k)] for k in range(job.count)]
            chosen = [kept[(job.id, k)] for k in range(job.count)] if kept else None
            note = None if chosen is None else candidates_note(
                job.prompt, chosen, int(p.candidates or 1), self.generator.judges_know(job.prompt))
            warnings = None if note is None else [*job.warnings, note]
            self._store(job, lambda files: self._write_files(job, files, clips_of_job, chosen, ran),  # noqa: B023
                        warnings)  # the lambda is called at once, inside this iteration

    def _run_operation(self, job: Job) -> None:
        """A variation, morph, kit pad or kit (see operations.py): render, write with retries, finish."""
        report = self._reporter([job.id])
        out = operations.render(job, self.generator, self.files,
                                lambda step, steps: report(step / max(steps, 1), step >= steps))
        self._store(job, lambda files: operations.write(job, out, files, self.generator.sample_rate), out.warnings)

    def _store(self, job: Job, write: Callable[[ResultFiles], list[dict[str, Any]]],
               warnings: list[str] | None) -> None:
        """``write(files)`` the job's files into a new attempt folder (with retries), then finish the job with them;
        whatever is left of the folder (the job was lost, or the write failed) is removed."""
        staged = self.files.stage(job.id)
        try:
            results = self._with_retries(job, lambda: write(staged))
            self._finish(job, staged, results, warnings)
        finally:
            staged.discard()

    def _finish(self, job: Job, staged: StagedFiles, results: list[dict[str, Any]],
                warnings: list[str] | None = None) -> None:
        """Move the attempt's files into the job's folder and mark it succeeded, in one step guarded by the job's
        holder. A worker that no longer holds the job (cancelled, or taken over while this worker stalled past the
        lease) drops only its own attempt: the files of the job's holder, or of the finished job, stay."""
        if self.store.finish(job.id, self.worker_id, results, warnings, publish=staged.publish):
            log.info("job succeeded", extra={"event": "job_succeeded", "job": job.id, "clips": len(results)})
            return
        now = self.store.get(job.id)
        if now is None or now.state == CANCELLED:
            log.info("job dropped after cancel", extra={"event": "job_dropped", "job": job.id})
        else:
            log.warning("job dropped: this worker lost its lease (silent past --lease-seconds) and another worker "
                        "took the job over", extra={"event": "job_dropped", "job": job.id, "state": now.state})

    def _with_retries(self, job: Job, write: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """``write()``, again after each of WRITE_RETRY_DELAYS while it raises a transient ResultWriteError (a
        write that libsndfile refuses fails the same way every time: at once)."""
        for delay in (*WRITE_RETRY_DELAYS, None):
            try:
                return write()
            except ResultWriteError as exc:
                if delay is None or self.stop.is_set() or not exc.transient:
                    raise
                log.warning("write failed, retrying", extra={"event": "write_retry", "job": job.id,
                                                             "error": str(exc), "retry_in_s": delay})
                time.sleep(delay)
                self.store.heartbeat([job.id], self.worker_id)
        raise AssertionError("unreachable")

    def _write_files(self, job: Job, files: ResultFiles, wavs: list[Tensor], kept: list[int | None] | None = None,
                     ran: GenerationParams | None = None) -> list[dict[str, Any]]:
        """The job's clips, manifest and pack, written by ``files`` (the attempt's); ``kept``: with candidates, the
        one each clip kept (None: none was); ``ran``: the settings as the model resolved them, for what the job left
        to it (duration, precision)."""
        p, seed0 = job.params, int(job.seed or 0)
        assert p.steps is not None and p.cfg_scale is not None  # filled in from the model when the job was made
        results: list[dict[str, Any]] = []
        made = p if ran is None else dataclasses.replace(p, duration=p.duration or ran.duration,
                                                         precision=p.precision or ran.precision)
        common = provenance(self.generator, made, prompt=job.prompt, seed=seed0)  # the clips differ by seed
        length = parse_length(p.length)
        for k, wav in enumerate(wavs):
            if length is not None:  # 'auto' or seconds, as the CLI writes its files
                wav = torch.from_numpy(apply_length(wav.numpy(), self.generator.sample_rate, length))
            meta = {**common, "seed": str(seed0 + k)}
            if kept is not None:  # as the CLI's files say it
                meta["candidate"] = "none" if kept[k] is None else str(kept[k])
            path = files.write_clip(job.id, k, wav, self.generator.sample_rate, p.format, meta)
            results.append({"index": k, "file": path.name, "seed": seed0 + k,
                            "samples": int(wav.shape[-1]), "sample_rate": self.generator.sample_rate,
                            **({} if kept is None else {"candidate": kept[k]})})
        files.write_manifest(job.id, {"id": job.id, "prompt": job.prompt, "model": job.model,
                                      "params": job.view_params(), "seed": seed0, "results": results})
        folder = files.job_dir(job.id)
        files.write_pack(job.id, [(folder / r["file"], download_name(job, r["index"])) for r in results]
                         + [(folder / "job.json", "job.json")])
        return results
