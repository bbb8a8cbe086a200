"""What a run never does, on the toy task: share its folder with another run, save or export broken weights,
export an untrained model, stop on a damaged log or checkpoint with a traceback, or take changed settings
without a word."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from sampleforge.errors import CheckpointError, UserInputError
from sampleforge.train.loop import TrainConfig, TrainingDiverged, exclusive, train

FAST = dict(batch_size=4, lr=3e-3, log_every=2, checkpoint_minutes=0.0)


def cfg(**kw: Any) -> TrainConfig:
    return TrainConfig(**{**FAST, **kw})


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(tmp_path: Path, toy: Any) -> None:
    import os

    out = tmp_path / "run"
    with exclusive(out):
        with pytest.raises(UserInputError, match=rf"{out} is in use by another training \(process {os.getpid()}\)"):
            train(toy(), cfg(max_steps=2), out, progress=False)
        assert not (out / "loss.csv").exists() and not (out / "checkpoint").exists()
    assert train(toy(), cfg(max_steps=2), out, progress=False).step == 2  # free again once the first has finished


def test_weights_that_are_not_finite_are_neither_saved_nor_exported(tmp_path: Path, toy: Any) -> None:
    class Breaking(toy):  # type: ignore[misc, valid-type]
        """A finite loss whose gradient is NaN from the third step: the step after it breaks the weights."""

        def loss(self, model: Any, batch: Any, generator: Any) -> Any:
            loss, metrics = super().loss(model, batch, generator)
            if self.calls >= 3:
                first = next(model.parameters())
                first.register_hook(lambda g: g * float("nan"))
            return loss, metrics

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"weights \(0.weight\) are not finite at step 3; no checkpoint is"):
        train(Breaking(), cfg(max_steps=3), out, progress=False)
    assert not (out / "checkpoint").exists() and not (out / "export").exists()
    with pytest.raises(TrainingDiverged, match=r"not finite at step 3; the checkpoint of step 2 is kept"):
        train(Breaking(), cfg(max_steps=3, checkpoint_every=2), tmp_path / "kept", progress=False)
    saved = json.loads((tmp_path / "kept" / "checkpoint" / "state.json").read_text())
    assert saved["step"] == 2 and not (tmp_path / "kept" / "export").exists()


def test_no_step_trained_exports_nothing_and_says_so(tmp_path: Path, toy: Any) -> None:
    result = train(toy(), cfg(max_steps=0), tmp_path / "run", progress=False)
    assert result.step == 0 and not result.export_dir.exists() and not result.checkpoint.exists()
    assert result.describe() == "no step trained (max_steps 0): no checkpoint, nothing exported"


def test_an_unreadable_loss_log_is_set_aside_and_a_new_one_begins(tmp_path: Path, toy: Any,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "loss.csv").write_bytes(b"garbage\x00\xff\n")
    with caplog.at_level(logging.WARNING, logger="sampleforge.train"):
        train(toy(), cfg(max_steps=4), out, progress=False)
    assert (out / "loss.unreadable.csv").read_bytes() == b"garbage\x00\xff\n"
    assert (out / "loss.csv").read_text().splitlines()[-1].startswith("4,")
    assert "loss.csv: unreadable" in caplog.text and "moved to loss.unreadable.csv" in caplog.text
    (out / "loss.csv").write_text("step,time,loss\nabc,1,2\n")  # on a resume too
    assert train(toy(), cfg(max_steps=6), out, resume=True, progress=False).step == 6


def test_a_damaged_checkpoint_is_named_not_a_traceback(tmp_path: Path, toy: Any) -> None:
    out = tmp_path / "run"
    train(toy(), cfg(max_steps=2), out, progress=False)
    state = out / "checkpoint" / "state.json"
    meta = json.loads(state.read_text())
    state.write_text(json.dumps({k: v for k, v in meta.items() if k != "config"}))
    with pytest.raises(CheckpointError, match=r"state.json: lacks config \(damaged or edited\)"):
        train(toy(), cfg(max_steps=4), out, resume=True, progress=False)
    state.write_text(json.dumps(meta))
    weights = out / "checkpoint" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=r"checkpoint: damaged \(.*\); put back a copy of it, or start"):
        train(toy(), cfg(max_steps=4), out, resume=True, progress=False)


def test_a_resume_with_other_settings_says_which(tmp_path: Path, toy: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Set(toy):  # type: ignore[misc, valid-type]
        def __init__(self, duration: float) -> None:
            super().__init__()
            self.duration = duration

        def settings(self) -> dict[str, dict[str, Any]]:
            return {"data": {"duration": self.duration, "augment": True}, "recipe": {"keyword_dropout": 0.1}}

    out = tmp_path / "run"
    train(Set(2.0), cfg(max_steps=2), out, progress=False)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["settings"]["data"]["duration"] == 2.0
    with caplog.at_level(logging.WARNING, logger="sampleforge.train"):
        train(Set(2.0), cfg(max_steps=3), out, resume=True, progress=False)
        assert "other settings" not in caplog.text
        train(Set(1.0), cfg(max_steps=4), out, resume=True, progress=False)
    assert "resuming with other settings than the checkpoint's" in caplog.text
    assert "data.duration 2.0 -> 1.0" in caplog.text and "augment" not in caplog.text
    assert torch.isfinite(torch.tensor(json.loads((out / "checkpoint" / "state.json").read_text())["step"]))
