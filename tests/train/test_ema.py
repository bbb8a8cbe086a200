"""EMA: the average on a known sequence, warmup, save/load, copy_to."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sampleforge.errors import CheckpointError
from sampleforge.train.ema import EMA


class Scalar(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([value], dtype=torch.float64))
        self.register_buffer("scale", torch.tensor([2.0], dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0))


def run(ema: EMA, model: Scalar, values: list[float]) -> None:
    for step, v in enumerate(values):
        with torch.no_grad():
            model.w.fill_(v)
            model.count += 1
        ema.update(model, step)


def test_known_sequence_without_warmup() -> None:
    model = Scalar(1.0)
    ema = EMA(model, decay=0.9, warmup=False)
    values = [2.0, 4.0, -1.0, 0.5]
    run(ema, model, values)
    expected = 1.0
    for v in values:
        expected = 0.9 * expected + 0.1 * v
    assert ema.shadow["w"].item() == pytest.approx(expected, rel=1e-12)
    assert ema.shadow["scale"].item() == 2.0  # a constant float buffer stays constant
    assert ema.shadow["count"].item() == 4  # integer buffers are copied, not averaged


def test_warmup_decay_and_sequence() -> None:
    model = Scalar(0.0)
    ema = EMA(model, decay=0.99, warmup=True)
    assert ema.decay_at(0) == pytest.approx(0.1)
    assert ema.decay_at(90) == pytest.approx(0.91)
    assert ema.decay_at(10_000) == 0.99
    values = [1.0, 3.0, 2.0]
    run(ema, model, values)
    expected = 0.0
    for step, v in enumerate(values):
        d = min(0.99, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * v
    assert ema.shadow["w"].item() == pytest.approx(expected, rel=1e-12)
    assert ema.shadow["w"].item() == pytest.approx(2.1545454545, rel=1e-9)  # by hand: 0.9, 28.8/11, ...


def test_state_round_trip_and_copy_to() -> None:
    model = Scalar(1.0)
    ema = EMA(model, decay=0.5, warmup=False)
    run(ema, model, [3.0])  # shadow 2.0, model 3.0
    state = {k: v.clone() for k, v in ema.state_dict().items()}
    other = EMA(Scalar(-7.0), decay=0.5, warmup=False)
    other.load_state_dict(state)
    target = Scalar(0.0)
    other.copy_to(target)
    assert target.w.item() == 2.0 and target.count.item() == 1
    assert target.w.requires_grad and model.w.item() == 3.0  # the source model is untouched


def test_update_follows_the_model_it_is_given() -> None:
    first, second = Scalar(0.0), Scalar(5.0)
    ema = EMA(first, decay=0.5, warmup=False)
    ema.update(first, 0)
    ema.update(second, 1)  # another model object: its weights, not the cached first's
    assert ema.shadow["w"].item() == 2.5


def test_load_rejects_another_model() -> None:
    ema = EMA(Scalar(1.0), decay=0.9)
    with pytest.raises(CheckpointError, match="missing key 'w'"):
        ema.load_state_dict({"scale": torch.ones(1, dtype=torch.float64), "count": torch.tensor(0)})
    bad = {k: v.clone() for k, v in ema.state_dict().items()} | {"w": torch.zeros(3, dtype=torch.float64)}
    with pytest.raises(CheckpointError, match="shape"):
        ema.load_state_dict(bad)


def test_decay_out_of_range() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(Scalar(0.0), decay=1.0)
