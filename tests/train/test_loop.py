"""The training loop on a toy regression task: learning, exact resume, checkpoints, logs, errors."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from sampleforge.errors import CheckpointError, UserInputError
from sampleforge.strict import ConfigError, from_dict
from sampleforge.train import checkpoint as ckpt_module
from sampleforge.train.loop import TrainConfig, TrainingDiverged, epoch_batches, lr_at, train

FAST = dict(batch_size=4, lr=3e-3, log_every=2, checkpoint_minutes=0.0)


def cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{**FAST, **kw})


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_loss_decreases_and_files_are_written(tmp_path: Path, toy: Any, load_weights: Any) -> None:
    task = toy(dropout=0.0)
    out = tmp_path / "run"
    run_cfg = cfg(max_steps=150, lr=1e-2, log_every=10, preview_every=75, ema_decay=0.9)
    result = train(task, run_cfg, out, progress=False)
    rows = csv_rows(out / "loss.csv")
    assert [int(r["step"]) for r in rows] == list(range(10, 151, 10))
    assert list(rows[0]) == ["step", "time", "loss", "grad_norm", "mae", "lr"]
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.2 * first, (first, last)
    assert result.step == result.steps_run == 150 and not result.stopped_early
    assert result.final_loss == pytest.approx(last, rel=1e-5)
    assert sorted(p.name for p in result.checkpoint.iterdir()) == [
        "ema.safetensors",
        "model.safetensors",
        "state.json",
        "state.safetensors",
    ]  # no pickles anywhere
    meta = json.loads((result.checkpoint / "state.json").read_text())
    assert (meta["step"], meta["task"], meta["world_size"]) == (150, "toy", 1)
    assert result.loss_png.stat().st_size > 1000
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step_0000075", "step_0000150"]
    assert (out / "previews" / "step_0000075" / "rank0.json").exists()
    assert task.previews == [(75, False, False), (150, False, False)]  # eval mode, no grad
    assert task.model.training  # and back to training afterwards
    # export and previews get the EMA weights, not the raw ones
    exported = load_weights(result.export_dir / "model.safetensors")
    ema = load_weights(result.checkpoint / "ema.safetensors")
    raw = load_weights(result.checkpoint / "model.safetensors")
    assert all(torch.equal(exported[k], ema[k]) for k in ema)
    assert not torch.equal(exported["0.weight"], raw["0.weight"])


def test_resume_equals_uninterrupted(tmp_path: Path, toy: Any, load_weights: Any) -> None:
    # 24 items / batch 4 = 6 steps per epoch: stop mid-epoch 2, finish in epoch 3
    kw = dict(warmup_steps=3, weight_decay=0.01, ema_decay=0.9, checkpoint_every=5)
    train(toy(), cfg(max_steps=13, **kw), tmp_path / "a", progress=False)
    first = train(toy(), cfg(max_steps=8, **kw), tmp_path / "b", progress=False)
    task = toy(init_seed=99)  # another init: the checkpoint must overwrite it
    second = train(task, cfg(max_steps=13, **kw), tmp_path / "b", resume=True, progress=False)
    assert (first.step, second.steps_run, second.step) == (8, 5, 13)
    assert task.data is not None and task.data.epochs == [1, 2]  # resumed inside epoch 1
    for name in ("model.safetensors", "ema.safetensors", "state.safetensors"):
        a = load_weights(tmp_path / "a" / "checkpoint" / name)
        b = load_weights(tmp_path / "b" / "checkpoint" / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs"
    rows_a = csv_rows(tmp_path / "a" / "loss.csv")
    rows_b = csv_rows(tmp_path / "b" / "loss.csv")
    assert [(r["step"], r["loss"], r["mae"]) for r in rows_a] == [
        (r["step"], r["loss"], r["mae"]) for r in rows_b
    ]


def test_csv_has_no_duplicate_steps_after_a_crash(tmp_path: Path, toy: Any) -> None:
    def crash(calls: int) -> None:
        if calls == 8:
            raise RuntimeError("killed")

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="killed"):  # rows 2, 4, 6 logged; checkpoint at 4
        train(toy(hook=crash), cfg(max_steps=10, checkpoint_every=4), out, progress=False)
    assert [r["step"] for r in csv_rows(out / "loss.csv")] == ["2", "4", "6"]
    result = train(toy(), cfg(max_steps=10, checkpoint_every=4), out, resume=True, progress=False)
    assert result.steps_run == 6
    assert [r["step"] for r in csv_rows(out / "loss.csv")] == ["2", "4", "6", "8", "10"]


def test_refuses_to_overwrite_without_resume(tmp_path: Path, toy: Any) -> None:
    out = tmp_path / "run"
    train(toy(), cfg(max_steps=2), out, progress=False)
    with pytest.raises(UserInputError, match="--resume.*another --out"):
        train(toy(), cfg(max_steps=4), out, progress=False)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path, toy: Any, caplog: Any) -> None:
    with caplog.at_level(logging.INFO, logger="sampleforge.train"):
        result = train(toy(), cfg(max_steps=2), tmp_path / "new", resume=True, progress=False)
    assert result.steps_run == 2
    assert "no checkpoint to resume from; starting fresh" in caplog.text


def test_resume_with_another_config_names_the_difference(tmp_path: Path, toy: Any) -> None:
    out = tmp_path / "run"
    train(toy(), cfg(max_steps=2), out, progress=False)
    with pytest.raises(CheckpointError, match=r"batch_size is 4 in the checkpoint, 8 now.*lr is 0.003"):
        train(toy(), cfg(max_steps=4, batch_size=8, lr=1e-3), out, resume=True, progress=False)
    # max_steps / logging / checkpointing may change ...
    train(toy(), cfg(max_steps=3, log_every=1, checkpoint_every=1), out, resume=True, progress=False)
    # ... except max_steps under the cosine schedule, whose shape depends on it
    cos = tmp_path / "cos"
    train(toy(), cfg(max_steps=2, lr_schedule="cosine"), cos, progress=False)
    with pytest.raises(CheckpointError, match=r"lr schedule \(max_steps 2 -> 5\) changes the lr of step 1"):
        train(toy(), cfg(max_steps=5, lr_schedule="cosine"), cos, resume=True, progress=False)


def test_resume_into_another_network_names_the_first_tensor_that_differs(tmp_path: Path, toy: Any) -> None:
    out = tmp_path / "run"
    first = train(toy(), cfg(max_steps=2), out, progress=False)
    assert first.describe() == (f"2 steps in {first.seconds:.1f} s (done at step 2, loss {first.final_loss:.4g}); "
                                f"checkpoint {out / 'checkpoint'}, curve {out / 'loss.png'}")
    wider = toy()
    wider.model[0] = torch.nn.Linear(4, 48)  # the model section of a recipe changed: 32 → 48 hidden units
    wider.model[3] = torch.nn.Linear(48, 1)
    with pytest.raises(CheckpointError, match=r"size mismatch for 0\.weight.*torch.Size\(\[32, 4\]\).*"
                                              r"another model config"):
        train(wider, cfg(max_steps=4), out, resume=True, progress=False)
    again = train(toy(), cfg(max_steps=2), out, resume=True, progress=False)
    assert again.describe().startswith("no step to run (done at step 2); checkpoint")


def test_constant_run_goes_on_with_a_cosine_decay(tmp_path: Path, toy: Any) -> None:
    out = tmp_path / "run"
    train(toy(), cfg(max_steps=3, log_every=1), out, progress=False)
    with pytest.raises(CheckpointError, match="changes the lr of step 2, already taken"):  # decay from step 2
        train(toy(), cfg(max_steps=6, lr_schedule="cosine", decay_start=1), out, resume=True, progress=False)
    later = cfg(max_steps=7, lr_schedule="cosine", decay_start=3, log_every=1)
    result = train(toy(), later, out, resume=True, progress=False)
    assert result.steps_run == 4
    lrs = [float(r["lr"]) for r in csv_rows(out / "loss.csv")]
    assert lrs[:3] == [FAST["lr"]] * 3 and lrs[3:] == pytest.approx([lr_at(later, s) for s in range(3, 7)])
    assert lrs[3] == FAST["lr"] and lrs[4] == pytest.approx(FAST["lr"] * (0.5 + 0.5 * math.cos(math.pi / 4)))


def test_stale_temp_dir_and_interrupted_swap(tmp_path: Path, toy: Any) -> None:
    out = tmp_path / "run"
    train(toy(), cfg(max_steps=2), out, progress=False)
    (out / "checkpoint.tmp").mkdir()
    (out / "checkpoint.tmp" / "state.json").write_text("{half written")
    result = train(toy(), cfg(max_steps=3), out, resume=True, progress=False)
    assert result.steps_run == 1 and not (out / "checkpoint.tmp").exists()
    # killed between the two renames: only checkpoint.old is left, and it is used
    os.rename(out / "checkpoint", out / "checkpoint.old")
    result = train(toy(), cfg(max_steps=4), out, resume=True, progress=False)
    assert result.steps_run == 1 and not (out / "checkpoint.old").exists()


def test_a_failed_save_keeps_the_last_good_checkpoint(tmp_path: Path, toy: Any, monkeypatch: Any) -> None:
    out = tmp_path / "run"
    train(toy(), cfg(max_steps=2), out, progress=False)
    good = (out / "checkpoint" / "model.safetensors").read_bytes()
    real = ckpt_module.save_file

    def dying_save(tensors: Any, filename: str, *a: Any, **kw: Any) -> None:
        if filename.endswith("state.safetensors"):
            Path(filename).write_bytes(b"partial")
            raise KeyboardInterrupt  # killed mid-write
        real(tensors, filename, *a, **kw)

    monkeypatch.setattr(ckpt_module, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(toy(), cfg(max_steps=4), out, resume=True, progress=False)
    monkeypatch.undo()
    assert (out / "checkpoint" / "model.safetensors").read_bytes() == good
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2
    assert train(toy(), cfg(max_steps=3), out, resume=True, progress=False).steps_run == 1


def test_signal_and_time_limit_stop_cleanly(tmp_path: Path, toy: Any) -> None:
    def interrupt(calls: int) -> None:
        if calls == 3:
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "sig"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    result = train(toy(hook=interrupt), cfg(max_steps=50), out, progress=False)
    assert result.stopped_early and result.step == 3
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 3
    assert (result.export_dir / "model.safetensors").exists()
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    result = train(toy(), cfg(max_steps=50), out, resume=True, max_minutes=0.0, progress=False)
    assert result.stopped_early and result.steps_run == 1


def test_diverging_loss_is_reported(tmp_path: Path, toy: Any) -> None:
    class Diverging(toy):  # type: ignore[misc, valid-type]
        def loss(self, model: Any, batch: Any, generator: Any) -> Any:
            loss, metrics = super().loss(model, batch, generator)
            return (loss * float("inf") if self.calls > 3 else loss), metrics

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at step 4; the checkpoint of step 2 is"):
        train(Diverging(), cfg(max_steps=10, checkpoint_every=2), out, progress=False)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] == 2


def test_data_order_and_lr_schedule() -> None:
    whole = epoch_batches(10, seed=0, epoch=0, position=0, batch_size=3)
    assert len(whole) == 3 and len({i for b in whole for i in b}) == 9  # last incomplete step dropped
    assert epoch_batches(10, 0, 0, 3, 3) == whole[1:]  # resume mid-epoch
    assert epoch_batches(10, 0, 1, 0, 3) != whole and epoch_batches(10, 1, 0, 0, 3) != whole
    r0 = epoch_batches(10, 0, 0, 0, 2, rank=0, world=2)
    r1 = epoch_batches(10, 0, 0, 0, 2, rank=1, world=2)
    assert [a + b for a, b in zip(r0, r1, strict=True)] == epoch_batches(10, 0, 0, 0, 4)[:2]
    c = TrainConfig(lr=1.0, warmup_steps=4, lr_schedule="cosine", max_steps=104)
    assert [lr_at(c, s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(c, 54) == pytest.approx(0.5) and lr_at(c, 104) == pytest.approx(0.0)
    assert lr_at(TrainConfig(lr=2.0), 10**6) == 2.0
    wsd = TrainConfig(lr=1.0, warmup_steps=4, lr_schedule="cosine", decay_start=54, max_steps=104)
    assert lr_at(wsd, 30) == 1.0 and lr_at(wsd, 79) == pytest.approx(0.5) and lr_at(wsd, 104) == pytest.approx(0.0)


def test_config_is_strict() -> None:
    assert from_dict(TrainConfig, {"betas": [0.8, 0.9], "grad_clip": None}).betas == (0.8, 0.9)
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        from_dict(TrainConfig, {"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="lr_schedule"):
        from_dict(TrainConfig, {"lr_schedule": "cos"})
    with pytest.raises(ConfigError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp16")
    with pytest.raises(ConfigError, match="decay_start: needs lr_schedule 'cosine'"):
        TrainConfig(decay_start=5)
    with pytest.raises(ConfigError, match="decay_start: must be between 0 and max_steps"):
        TrainConfig(lr_schedule="cosine", decay_start=5, max_steps=4)


def test_too_few_items_for_one_step(tmp_path: Path, toy: Any) -> None:
    with pytest.raises(UserInputError, match="3 training items, fewer than one step needs"):
        train(toy(n=3), cfg(max_steps=2), tmp_path / "run", progress=False)


def test_bf16_runs(tmp_path: Path, toy: Any) -> None:
    result = train(toy(), cfg(max_steps=4, mixed_precision="bf16"), tmp_path / "run", progress=False)
    assert result.final_loss is not None and result.final_loss > 0
