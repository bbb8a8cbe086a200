"""The generic, resumable training loop that every training task (VAE, diffusion, vocoder) plugs into.

A task gives a model, a dataset and a loss; :func:`train` does the rest: AdamW with warmup (then
constant or cosine lr, or constant then cosine from ``decay_start``), gradient clipping, EMA, a deterministic
data order, a tqdm bar, the loss log (``loss.csv`` + ``loss.png``), previews, atomic checkpoints and exact
resume:

    run 0..N in one go  ==  run 0..k, kill, resume, run k..N      (bit for bit on CPU)

because everything that decides step s is saved: weights, optimizer, EMA, RNG states (global torch,
python, numpy and the loss generator), and the data position; the data order of epoch e is a
permutation drawn from (seed, e), never from a DataLoader's shuffle state.

Launched by ``accelerate launch --multi_gpu --num_processes N`` (or ``torchrun``), the same call
runs data-parallel through accelerate (torch DDP; gloo on CPU): rank r takes the r-th slice of each
step's ``batch_size * N`` items, gradients are averaged, and only rank 0 writes files.
A single process runs plain torch (accelerate's wrappers only add per-step overhead there).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sampleforge.devices import torch_device
from sampleforge.errors import CheckpointError, SampleforgeError, UserInputError
from sampleforge.strict import ConfigError, require_finite, to_dict
from sampleforge.train.checkpoint import (
    checkpoint_path,
    find_checkpoint,
    get_rng_state,
    load_checkpoint,
    read_meta,
    save_checkpoint,
    set_rng_state,
)
from sampleforge.train.ema import EMA
from sampleforge.train.logger import LossLog

log = logging.getLogger("sampleforge.train")

PLOT_SECONDS = 60.0  # least wall-clock time between two redraws of loss.png


@dataclass
class TrainConfig:
    """How to train (not what): one flat, strict config shared by every task."""

    max_steps: int = 1000  # optimizer steps in total; a resumed run may raise it
    batch_size: int = 16  # items per step and process (global batch = batch_size * processes)
    lr: float = 2e-4  # peak learning rate (AdamW)
    lr_schedule: str = "constant"  # after warmup: "constant", or "cosine" (down to 0 at max_steps)
    decay_start: int | None = None  # cosine: the step its decay starts at, the lr constant until then (None: warmup's end)
    weight_decay: float = 0.0  # AdamW decay of weight matrices/kernels (never biases or norms)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moment decays
    warmup_steps: int = 0  # linear warmup: lr * (step + 1) / warmup_steps
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    ema_decay: float | None = None  # e.g. 0.999; None: no EMA
    ema_warmup: bool = True  # EMA decay min(ema_decay, (1 + step) / (10 + step))
    log_every: int = 10  # steps between loss rows, progress-bar losses (and cross-process checks)
    checkpoint_minutes: float = 5.0  # wall-clock minutes between checkpoints; 0: off
    checkpoint_every: int | None = None  # also checkpoint every N steps
    preview_every: int | None = None  # task.preview every N steps
    seed: int = 0  # data order, loss noise, global RNGs, and the networks' initial weights (`sampleforge train`
    # seeds torch with it before it builds a stage's networks): a fresh run with the same seed gives the same model
    num_workers: int = 0  # DataLoader worker processes
    mixed_precision: str = "no"  # "no" or "bf16" (autocast around the loss)

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"train.{key}: {rule}, got {getattr(self, key)!r}")

        require_finite("train", self)  # an lr of Infinity passes "> 0" and trains a model of NaNs
        need(self.max_steps >= 0, "max_steps", "must be >= 0")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.lr_schedule in ("constant", "cosine"), "lr_schedule", "must be 'constant' or 'cosine'")
        need(self.decay_start is None or 0 <= self.decay_start <= self.max_steps, "decay_start",
             "must be between 0 and max_steps, or null")
        need(self.decay_start is None or self.lr_schedule == "cosine", "decay_start", "needs lr_schedule 'cosine'")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        betas_ok = len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)
        need(betas_ok, "betas", "must be 2 numbers in [0, 1)")
        need(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "must be > 0 or null")
        need(self.ema_decay is None or 0 <= self.ema_decay < 1, "ema_decay", "must be in [0, 1) or null")
        need(self.log_every >= 1, "log_every", "must be >= 1")
        need(self.checkpoint_minutes >= 0, "checkpoint_minutes", "must be >= 0")
        need(self.checkpoint_every is None or self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
        need(self.preview_every is None or self.preview_every >= 1, "preview_every", "must be >= 1")
        need(self.num_workers >= 0, "num_workers", "must be >= 0")
        need(self.mixed_precision in ("no", "bf16"), "mixed_precision", "must be 'no' or 'bf16'")


# Fields a resumed run may change; every other field must match the checkpoint's. The schedule's fields may
# change as long as every step already taken keeps its lr: a constant-lr run can go on with a cosine decay
# from where it stands (warmup, stable, decay), and a cosine run cannot be stretched midway.
RESUMABLE_CHANGES = frozenset(
    {"max_steps", "log_every", "checkpoint_minutes", "checkpoint_every", "preview_every", "num_workers"}
)
SCHEDULE_FIELDS = frozenset({"max_steps", "lr_schedule", "decay_start"})


class Task(Protocol):
    """What a training task provides. ``model`` holds every trainable parameter (a ModuleDict is fine)."""

    name: str
    model: nn.Module

    def dataset(self) -> Dataset[Any]:
        """The training items (``set_epoch(epoch)`` is called before each epoch if it exists)."""
        ...

    def collate(self, items: list[Any]) -> Any:
        """A list of items -> one batch (tensors inside dicts/lists/tuples are moved to the device)."""
        ...

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator
    ) -> tuple[Tensor, Mapping[str, Tensor | float]]:
        """(scalar loss to minimise, metrics to log). Draw all noise from ``generator`` (it is saved and
        restored); metrics may be 0-d tensors (preferred: no per-step sync) or floats."""
        ...

    def preview(self, model: nn.Module, out_dir: Path, step: int) -> None:
        """Write something to look at or listen to into ``out_dir`` (EMA weights if EMA is on; no grad)."""
        ...

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """Write the final weights into ``out_dir`` (EMA weights if EMA is on; no grad)."""
        ...

    # Optional, for a task with state of its own outside ``model`` (a discriminator and its optimizer):
    #   extra_state() -> (tensors, JSON-able) | None            saved with every checkpoint
    #   load_extra_state(tensors, JSON-able | None, where)     given them back on resume (None: the
    #                                                            checkpoint has none)


@dataclass
class TrainResult:
    """What a call of :func:`train` did."""

    step: int  # the step the run is at now
    steps_run: int  # steps done by this call
    final_loss: float | None  # mean loss of the last logged window (None: no step run)
    seconds: float  # wall-clock time of this call
    stopped_early: bool  # stopped by max_minutes or a signal before max_steps
    out_dir: Path
    checkpoint: Path  # out_dir/checkpoint
    loss_csv: Path  # out_dir/loss.csv
    loss_png: Path  # out_dir/loss.png
    export_dir: Path  # out_dir/export (written by task.export)

    def describe(self) -> str:
        """One line for people: what this call did, where the run is, and where its checkpoint and curve are."""
        if self.step == 0:
            return "no step trained (max_steps 0): no checkpoint, nothing exported"
        done = f"{self.steps_run:,} steps in {self.seconds:.1f} s" if self.steps_run else "no step to run"
        loss = "" if self.final_loss is None else f", loss {self.final_loss:.4g}"
        state = "stopped early" if self.stopped_early else "done"
        return f"{done} ({state} at step {self.step:,}{loss}); checkpoint {self.checkpoint}, curve {self.loss_png}"


class TrainingDiverged(SampleforgeError):
    """The loss became NaN or infinite."""


def train(
    task: Task,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    max_minutes: float | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> TrainResult:
    """Train ``task.model`` in place; files go to ``out_dir`` (see module doc).

    ``resume``: continue the checkpoint in ``out_dir`` (none: start fresh). Without it an existing
    checkpoint is an error. ``max_minutes``: stop cleanly (checkpoint + export) after this long.
    ``device``: single-process only (default CUDA if available); a distributed launch picks its own.
    Seeds the global torch/python/numpy RNGs from ``cfg.seed`` (fresh runs) or the checkpoint.
    SIGINT/SIGTERM stop after the current step with a checkpoint (a second one aborts).
    """
    run = _Run(task, cfg, Path(out_dir), device)
    with _StopRequest() as stop, exclusive(run.out_dir, run.rt.main):
        return run.start(resume).loop(max_minutes, progress, stop)


@contextlib.contextmanager
def exclusive(folder: Path, main: bool = True) -> Iterator[None]:
    """Hold ``folder/.lock`` (an advisory lock that ends with the process) while a run writes ``folder``; a second
    run into the same folder is a UserInputError naming the process that has it. Other ranks of a distributed
    launch (``main`` False) take no lock: their rank 0 holds it."""
    import fcntl

    if not main:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
            raise UserInputError(f"{folder} is in use by another training (process {holder}); wait for it to "
                                 "finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then constant or cosine."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        start = max(cfg.warmup_steps, cfg.decay_start or 0)
        progress = min(1.0, max(0, step - start) / max(1, cfg.max_steps - start))
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr


def epoch_batches(
    n_items: int, seed: int, epoch: int, position: int, batch_size: int, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """Dataset indices of this rank's batches in ``epoch``, from item offset ``position`` on.

    The epoch's order is a permutation drawn from (seed, epoch); each step takes the next
    ``batch_size * world`` items of it, rank r the r-th slice; an incomplete last step is dropped.
    """
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(derived_seed(seed, "order", epoch)))
    perm = order.tolist()
    per_step = batch_size * world
    starts = range(position, n_items - per_step + 1, per_step)
    return [perm[s + rank * batch_size : s + (rank + 1) * batch_size] for s in starts]


def config_differences(saved: Mapping[str, Any], cfg: TrainConfig, step: int) -> list[str]:
    """Human-readable differences that forbid resuming ``saved`` (a checkpoint's config, at ``step``) with ``cfg``."""
    old, new = _identity(dict(saved)), _identity(to_dict(cfg))
    diffs = [
        f"{k} is {old.get(k, '(unset)')!r} in the checkpoint, {new.get(k, '(unset)')!r} now"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if diffs:
        return diffs
    schedule: dict[str, Any] = {k: saved.get(k) for k in SCHEDULE_FIELDS}
    before = dataclasses.replace(cfg, **schedule)
    changed = next((s for s in range(step) if not math.isclose(lr_at(before, s), lr_at(cfg, s), rel_tol=1e-9)), None)
    if changed is not None:
        changes = ", ".join(f"{k} {saved.get(k)!r} -> {getattr(cfg, k)!r}" for k in sorted(SCHEDULE_FIELDS)
                            if saved.get(k) != getattr(cfg, k))
        diffs.append(f"the lr schedule ({changes}) changes the lr of step {changed}, already taken "
                     f"(a new schedule may start at the checkpoint's step {step} or later: decay_start)")
    return diffs


def setting_changes(saved: Any, now: Mapping[str, Any] | None) -> list[str]:
    """What differs between the data and recipe settings a checkpoint was trained with (``saved``, None for a
    checkpoint that recorded none) and a task's now, one "section.key old -> new" each."""
    if not isinstance(saved, Mapping) or now is None:
        return []
    old, new = ({f"{section}.{k}": v for section, values in d.items() if isinstance(values, Mapping)
                 for k, v in values.items()} for d in (saved, now))
    return [f"{k} {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def config_hash(cfg: TrainConfig) -> str:
    """Hash of the fields that must match for a resume."""
    return hashlib.sha256(json.dumps(_identity(to_dict(cfg)), sort_keys=True).encode()).hexdigest()[:16]


def _identity(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in RESUMABLE_CHANGES | SCHEDULE_FIELDS}


def derived_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


class _Runtime:
    """One process, or one rank of a distributed launch (WORLD_SIZE > 1), then through accelerate."""

    def __init__(self, device: str | torch.device | None) -> None:
        self.accelerator: Any = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import Accelerator
            from accelerate.utils import DistributedDataParallelKwargs

            force_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
            # a loss may leave some parameters unused in a step (e.g. a CFG null embedding): let DDP cope
            ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
            cpu = force_cpu or not torch.cuda.is_available()
            self.accelerator = Accelerator(cpu=cpu, kwargs_handlers=[ddp])
            self.rank, self.world = self.accelerator.process_index, self.accelerator.num_processes
            self.device = torch.device(self.accelerator.device)
        else:
            self.rank, self.world = 0, 1
            self.device = torch_device(device)
        self.main = self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP-wrap ``module`` when distributed (gradients averaged across ranks in backward)."""
        if self.accelerator is None:
            return module
        return self.accelerator.prepare_model(module, device_placement=False)  # type: ignore[no-any-return]

    def agree(self, flags: list[bool]) -> list[bool]:
        """Rank 0's flags on every rank."""
        if self.world == 1:
            return flags
        t = torch.tensor(flags, dtype=torch.int32, device=self.device)
        torch.distributed.broadcast(t, src=0)
        return [bool(v) for v in t.tolist()]

    def mean(self, t: Tensor) -> Tensor:
        """Mean of ``t`` over ranks."""
        if self.world > 1:
            torch.distributed.all_reduce(t)
            t = t / self.world
        return t

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


class _LossModule(nn.Module):
    """``task.loss`` as a module's forward, so DDP sees the whole step through one wrapped call."""

    def __init__(self, task: Task, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, batch: Any, generator: torch.Generator) -> tuple[Tensor, Mapping[str, Tensor | float]]:
        return self.task.loss(self.model, batch, generator)


class _StopRequest:
    """SIGINT/SIGTERM → finish the step, checkpoint, stop; a second signal aborts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        name = signal.Signals(signum).name
        log.warning("%s: stopping after this step with a checkpoint (again to abort)", name)


class _Window:
    """Running sums of the loss and metrics between two log rows (tensors stay on the device)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor | float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, Tensor | float]) -> None:
        for k, v in values.items():
            v = v.detach().float() if isinstance(v, Tensor) else float(v)
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self, rt: _Runtime) -> dict[str, float]:
        """Means over the window (and over ranks); one device sync. Empties the window."""
        names = list(self.sums)
        dev = rt.device
        sums = [torch.as_tensor(self.sums[k], dtype=torch.float32, device=dev).reshape(()) for k in names]
        values = rt.mean(torch.stack(sums)).tolist()
        out = {k: v / self.counts[k] for k, v in zip(names, values, strict=True)}
        self.sums, self.counts = {}, {}
        return out


class _Run:
    """The state of one training run; :func:`train` is ``_Run(...).start(resume).loop(...)``."""

    def __init__(self, task: Task, cfg: TrainConfig, out_dir: Path, device: str | torch.device | None):
        self.task, self.cfg, self.out_dir = task, cfg, out_dir
        self.rt = _Runtime(device)
        self.model = task.model.to(self.rt.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise UserInputError(f"task {task.name!r}: the model has no trainable parameters")
        groups = _param_groups(self.params, cfg.weight_decay)
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay is not None else None
        self.gen = torch.Generator(device=self.rt.device)
        self.dataset = task.dataset()
        self.n_items = len(self.dataset)  # type: ignore[arg-type]
        self.per_step = cfg.batch_size * self.rt.world
        if self.n_items < self.per_step:
            raise UserInputError(
                f"task {task.name!r}: {self.n_items} training items, fewer than one step needs "
                f"(batch_size {cfg.batch_size} x {self.rt.world} processes)"
            )
        self.step = self.epoch = self.position = 0
        self.elapsed_before = 0.0
        self.saved_step = 0
        self.last_loss: float | None = None
        self.last_lr = lr_at(cfg, 0)
        self.window = _Window()

    # ---- start: fresh or resumed ----
    def start(self, resume: bool) -> _Run:
        path = checkpoint_path(self.out_dir)
        if self.rt.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            find_checkpoint(self.out_dir)  # repairs an interrupted save, drops a stale temp dir
        self.rt.barrier()
        found = (path / "state.json").exists()
        if found and not resume:
            step = read_meta(path).get("step")
            raise UserInputError(
                f"{self.out_dir} already holds a training checkpoint (step {step}); "
                "pass --resume to continue it, or choose another --out"
            )
        if found:
            self._restore(path)
        else:
            if resume:
                log.info("%s: no checkpoint to resume from; starting fresh", self.out_dir)
            self._seed_fresh()
        self.loss_log = LossLog(self.out_dir, keep_until=self.step) if self.rt.main else None
        self.net = self.rt.wrap(_LossModule(self.task, self.model))
        return self

    def _seed_fresh(self) -> None:
        seed, r = self.cfg.seed, self.rt.rank
        torch.manual_seed(derived_seed(seed, "torch", r))
        random.seed(derived_seed(seed, "python", r))
        np.random.seed(derived_seed(seed, "numpy", r) % 2**32)
        self.gen.manual_seed(derived_seed(seed, "loss", r))

    def _restore(self, path: Path) -> None:
        meta = read_meta(path)
        if meta.get("task") != self.task.name:
            raise CheckpointError(f"{path}: written by task {meta.get('task')!r}, this is {self.task.name!r}")
        diffs = config_differences(meta["config"], self.cfg, int(meta["step"]))
        if diffs:
            raise CheckpointError(
                f"{path}: cannot resume with another training config: {'; '.join(diffs)}. "
                "Use the checkpoint's values, or start a new run with another --out"
            )
        tensors, ema = load_checkpoint(path, self.model, self.opt, self.rt.device)
        if self.ema is not None:
            if ema is None:
                raise CheckpointError(f"{path}: has no ema.safetensors but ema_decay is set")
            self.ema.load_state_dict({k: v.to(self.rt.device) for k, v in ema.items()})
        self.step, self.epoch, self.position = meta["step"], meta["epoch"], meta["position"]
        self.saved_step, self.elapsed_before = self.step, float(meta["elapsed"])
        if meta["n_items"] != self.n_items:
            log.warning("the dataset has %d items, the checkpoint's %d: the data order changes", self.n_items,
                        meta["n_items"])
        if meta["world_size"] != self.rt.world:
            log.warning("resuming %d-process training with %d processes", meta["world_size"], self.rt.world)
        self._normalise_position()
        r = self.rt.rank
        if r < len(meta["rng"]):
            mine = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng.{r}.")}
            set_rng_state(meta["rng"][r], mine, self.gen)
        else:
            log.warning("rank %d has no saved RNG state; reseeding it", r)
            self._seed_fresh()
        settings = getattr(self.task, "settings", None)
        changed = setting_changes(meta.get("settings"), settings() if settings is not None else None)
        if changed:
            log.warning("resuming with other settings than the checkpoint's (the run goes on with the new ones): "
                        "%s", "; ".join(changed))
        load_extra = getattr(self.task, "load_extra_state", None)
        if load_extra is not None:
            own = {k[len("task."):]: v for k, v in tensors.items() if k.startswith("task.")}
            load_extra(own, meta.get("task_state"), str(path))
        log.info("%s: resuming at step %d (epoch %d)", path, self.step, self.epoch)

    def _normalise_position(self) -> None:
        if self.position + self.per_step > self.n_items:
            self.epoch, self.position = self.epoch + 1, 0

    # ---- the loop ----
    def loop(self, max_minutes: float | None, progress: bool, stop_request: _StopRequest) -> TrainResult:
        cfg = self.cfg
        t0 = self.last_save = self.last_plot = time.monotonic()
        self.t0, first_step, stopped = t0, self.step, False
        if self.step >= cfg.max_steps:
            log.info("already at step %d of max_steps %d; nothing to train", self.step, cfg.max_steps)
        show = progress and self.rt.main
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not show, unit="step", dynamic_ncols=True)
        try:
            while self.step < cfg.max_steps and not stopped:
                for batch in self._epoch_loader():
                    self._train_step(batch)
                    bar.update(1)
                    now = time.monotonic()
                    done = self.step >= cfg.max_steps
                    timed = False
                    if self.rt.world == 1 or self.step % cfg.log_every == 0 or done:  # ranks must agree
                        over = max_minutes is not None and now - t0 >= max_minutes * 60
                        due = 0 < cfg.checkpoint_minutes * 60 <= now - self.last_save
                        stopped, timed = self.rt.agree([stop_request.requested or over, due])
                        stopped = stopped and not done
                    if self.step % cfg.log_every == 0 or done or stopped:
                        self._log(bar)
                    if cfg.preview_every and self.step % cfg.preview_every == 0:
                        self._preview()
                    every = cfg.checkpoint_every is not None and self.step % cfg.checkpoint_every == 0
                    if timed or done or stopped or every:
                        self._save(final=done or stopped)
                    if done or stopped:
                        break
            if self.rt.main and self.step > 0:  # an untrained model is nothing to export or install
                self.export_dir.mkdir(parents=True, exist_ok=True)
                with self._inference_model() as model:
                    self.task.export(model, self.export_dir)
            self.rt.barrier()
        finally:
            bar.close()
        return TrainResult(
            step=self.step,
            steps_run=self.step - first_step,
            final_loss=self.last_loss,
            seconds=time.monotonic() - t0,
            stopped_early=stopped,
            out_dir=self.out_dir,
            checkpoint=checkpoint_path(self.out_dir),
            loss_csv=self.out_dir / "loss.csv",
            loss_png=self.out_dir / "loss.png",
            export_dir=self.export_dir,
        )

    @property
    def export_dir(self) -> Path:
        return self.out_dir / "export"

    def _epoch_loader(self) -> Iterator[Any]:
        """This rank's batches from (epoch, position) to the end of the epoch."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        cfg, rt = self.cfg, self.rt
        n, epoch, pos = self.n_items, self.epoch, self.position
        batches = epoch_batches(n, cfg.seed, epoch, pos, cfg.batch_size, rt.rank, rt.world)
        loader = DataLoader(
            self.dataset,
            batch_sampler=batches,
            collate_fn=self.task.collate,
            num_workers=self.cfg.num_workers,
            pin_memory=self.rt.device.type == "cuda",
            # its own generator: worker seeds follow (seed, epoch, position), and creating the
            # iterator does not consume the global RNG (which would break exact resume)
            generator=torch.Generator().manual_seed(derived_seed(cfg.seed, "workers", self.epoch, self.position)),
        )
        for batch in loader:
            yield batch if self.rt.device.type == "cpu" else _to_device(batch, self.rt.device)

    def _train_step(self, batch: Any) -> None:
        self.last_lr = lr_at(self.cfg, self.step)
        for group in self.opt.param_groups:
            group["lr"] = self.last_lr
        amp = self.cfg.mixed_precision == "bf16"
        with torch.autocast(self.rt.device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            loss, metrics = self.net(batch, self.gen)
        loss.backward()
        if self.cfg.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            self.window.add({"grad_norm": norm})
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        self.window.add({"loss": loss, **metrics})
        self.step += 1
        self.position += self.per_step
        self._normalise_position()

    def _log(self, bar: tqdm) -> None:
        if not self.window.counts:
            return
        means = self.window.means(self.rt)
        loss = means.pop("loss")
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"the loss is {loss} at step {self.step}; the checkpoint of step {self.saved_step} is kept "
                "(try a lower lr, more warmup_steps or a smaller grad_clip)"
            )
        self.last_loss = loss
        if self.loss_log is not None:
            self.loss_log.append(self.step, self._elapsed(), {"loss": loss, **means, "lr": self.last_lr})
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    @contextlib.contextmanager
    def _inference_model(self) -> Iterator[nn.Module]:
        """The model for preview/export: an EMA-weighted copy, or the model itself; eval mode, no grad."""
        if self.ema is not None:
            model = copy.deepcopy(self.model)
            self.ema.copy_to(model)
        else:
            model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                yield model
        finally:
            model.train(was_training)

    def _preview(self) -> None:
        if not self.rt.main:
            return
        out = self.out_dir / "previews" / f"step_{self.step:07d}"
        out.mkdir(parents=True, exist_ok=True)
        with self._inference_model() as model:
            self.task.preview(model, out, self.step)

    def _save(self, final: bool) -> None:
        broken = next((n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())), None)
        if broken is not None:  # a loss computed before the step that broke them can still look fine
            kept = f"the checkpoint of step {self.saved_step} is kept" if self.saved_step else "no checkpoint is written"
            raise TrainingDiverged(f"the weights ({broken}) are not finite at step {self.step}; {kept} (try a lower "
                                   "lr, more warmup_steps or a smaller grad_clip)")
        states = self.rt.gather(get_rng_state(self.gen))
        if self.rt.main:
            tensors = {f"rng.{r}.{k}": v for r, (_, ts) in enumerate(states) for k, v in ts.items()}
            meta = {
                "task": self.task.name,
                "step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "n_items": self.n_items,
                "world_size": self.rt.world,
                "elapsed": self._elapsed(),
                "lr": self.last_lr,
                "config": to_dict(self.cfg),
                "config_hash": config_hash(self.cfg),
                "rng": [js for js, _ in states],
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            settings = getattr(self.task, "settings", None)
            if settings is not None:
                meta["settings"] = settings()
            extra = getattr(self.task, "extra_state", None)
            own = extra() if extra is not None else None
            if own is not None:
                tensors.update({f"task.{k}": v for k, v in own[0].items()})
                meta["task_state"] = own[1]
            ema = self.ema.state_dict() if self.ema is not None else None
            save_checkpoint(self.out_dir, self.model, self.opt, meta, tensors, ema)
            # the plot costs ~0.5 s: redraw at most once a minute, and at the last checkpoint of the call
            if self.loss_log is not None and (final or time.monotonic() - self.last_plot >= PLOT_SECONDS):
                self.loss_log.plot()
                self.last_plot = time.monotonic()
        self.saved_step, self.last_save = self.step, time.monotonic()

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0


def _param_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices/kernels only (biases, norms and embeddings' 1-d params are exempt)."""
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _to_device(batch: Any, device: torch.device) -> Any:
    """Tensors inside dicts/lists/tuples → ``device``; anything else as it is."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and type(batch) in (list, tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch
