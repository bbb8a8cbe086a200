"""Prediction types: what a diffusion network predicts ("eps", "v", "x0" or the flow velocity "flow").

Each type is one object that gives both directions, so training and sampling cannot disagree:
``target`` (what the network learns) and ``x0`` (the sampler's inverse: network output -> x0 estimate).
Both work on ``x_t = alpha * x0 + sigma * noise``:

- DDPM types on a schedule ``alphas_cumprod`` (T,): ``alpha = sqrt(a_t)``, ``sigma = sqrt(1 - a_t)`` at an
  integer timestep t, which is also the network's time input.
- flow: ``alpha = 1 - t``, ``sigma = t`` for t in [0, 1]; the network's time input is ``t * FLOW_TIME_SCALE``
  (the same range as a DDPM timestep, which the U-Net's sinusoidal embedding is made for).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sampleforge.devices import integers, normal, uniform
from sampleforge.errors import UserInputError

FLOW_TIME_SCALE = 1000.0


@dataclass(frozen=True)
class Prediction:
    """One parameterisation of the network output."""

    name: str

    @property
    def flow(self) -> bool:
        return self.name == "flow"

    def target(self, x0: Tensor, noise: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """What the network should output for ``x_t = alpha x0 + sigma noise`` (alpha, sigma broadcastable)."""
        if self.name == "eps":
            return noise
        if self.name == "v":  # Salimans & Ho: v = alpha eps - sigma x0
            return alpha * noise - sigma * x0
        if self.name == "x0":
            return x0
        return noise - x0  # flow velocity dx_t/dt

    def x0(self, out: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """The inverse of ``target``: network output at ``x_t`` -> x0 estimate."""
        if self.name == "eps":
            return (x_t - sigma * out) / alpha
        if self.name == "v":  # needs alpha^2 + sigma^2 = 1 (DDPM)
            return alpha * x_t - sigma * out
        if self.name == "x0":
            return out
        return x_t - sigma * out  # flow: x_t = x0 + t v


PREDICTIONS: dict[str, Prediction] = {name: Prediction(name) for name in ("eps", "v", "x0", "flow")}


def get_prediction(name: str) -> Prediction:
    """The prediction type called ``name``; an unknown name raises UserInputError listing the valid ones."""
    try:
        return PREDICTIONS[name]
    except KeyError:
        raise UserInputError(f"unknown prediction {name!r} (valid: {', '.join(PREDICTIONS)})") from None


@dataclass
class TrainingExample:
    """One training batch: the network input x_t (B, ...), its time input (B,) and the target (B, ...)."""

    x_t: Tensor
    time: Tensor
    target: Tensor


def training_example(
    prediction: Prediction, x0: Tensor, generator: torch.Generator, alphas_cumprod: Tensor | None = None
) -> TrainingExample:
    """Noise clean latents x0 (B, ...) at a random level per sample: a uniform DDPM timestep (on
    ``alphas_cumprod`` (T,)) or, for flow, a uniform t in [0, 1]. The draws are made on the generator's device
    (the training loop's lives on the training device) and moved to x0's."""
    b = x0.shape[0]
    if prediction.flow:
        t = uniform(b, generator, x0.device)
        alpha, sigma, time = 1 - t, t, t * FLOW_TIME_SCALE
    else:
        if alphas_cumprod is None:
            raise UserInputError(f"a {prediction.name!r}-prediction model needs its training alphas_cumprod")
        steps = integers(alphas_cumprod.shape[0], (b,), generator, x0.device)
        a = alphas_cumprod.to(x0.device)[steps]
        alpha, sigma, time = a.sqrt(), (1 - a).sqrt(), steps.float()
    noise = normal(x0.shape, generator, x0.device)
    shape = (b, *([1] * (x0.dim() - 1)))
    alpha, sigma = alpha.view(shape).to(x0), sigma.view(shape).to(x0)
    return TrainingExample(alpha * x0 + sigma * noise, time, prediction.target(x0, noise, alpha, sigma))
