"""Our sampler names mapped onto diffusers schedulers, per model family.

"native" keeps the scheduler the pipeline was saved with. Every other name builds a diffusers scheduler from
the saved scheduler's config (same training schedule, sigma range and prediction type), so the model sees the
noise levels it was trained on. ``describe`` tells which scheduler a name stands for.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch

NATIVE = "native"

# family -> our sampler name -> (diffusers scheduler class, config overrides)
SCHEDULERS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    # v-prediction on EDM-style sigmas; the network's timestep is atan(sigma) * 2 / pi (see _CosineTime)
    "stable-audio": {
        "euler": ("EDMEulerScheduler", {}),
        "dpmpp_2m": ("EDMDPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    },
    # a DDPM (eps or v) on a discrete training schedule
    "audioldm2": {
        "ddim": ("DDIMScheduler", {}),
        "euler": ("EulerDiscreteScheduler", {}),
        "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
        "heun": ("HeunDiscreteScheduler", {}),
        "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    },
    # rectified flow: plain Euler, or Euler with fresh noise at every step (the distilled model's ping-pong)
    "stable-audio-3": {
        "flow_euler": ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": False}),
        "pingpong": ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}),
    },
}


def mapped_names() -> tuple[str, ...]:
    """"native" and every name some family maps (for the sampler setting's choices)."""
    return tuple(dict.fromkeys([NATIVE, *(n for table in SCHEDULERS.values() for n in table)]))


def sampler_names(family: str) -> tuple[str, ...]:
    """"native" first (the default), then the names this family maps."""
    return (NATIVE, *SCHEDULERS.get(family, {}))


def _cosine_time(cls: type) -> type:
    """``cls`` with Stable Audio's timestep convention (atan(sigma) * 2 / pi instead of EDM's log(sigma) / 4)."""

    class CosineTime(cls):  # type: ignore[misc, valid-type]
        def precondition_noise(self, sigma: Any) -> torch.Tensor:
            if not isinstance(sigma, torch.Tensor):
                sigma = torch.tensor([sigma])
            return sigma.atan() / math.pi * 2

    CosineTime.__name__ = cls.__name__
    return CosineTime


def scheduler_class(family: str, name: str, native: Any) -> Any:
    """The class sampler ``name`` runs (``native``'s own for "native")."""
    if name == NATIVE:
        return type(native)
    import diffusers

    return getattr(diffusers, SCHEDULERS[family][name][0])


def takes_eta(family: str, name: str, native: Any) -> bool:
    """Whether sampler ``name``'s steps take DDIM's eta (diffusers passes it only to a ``step`` that has it)."""
    return "eta" in inspect.signature(scheduler_class(family, name, native).step).parameters


def shifts_time(native: Any) -> bool:
    """Whether a flow-matching scheduler applies a fixed time shift (``shift``; not the resolution-dependent
    ``use_dynamic_shifting``, which takes its shift from the pipeline)."""
    config = native.config
    return "shift" in config and not config.get("use_dynamic_shifting", False)


def build_scheduler(family: str, name: str, native: Any, flow_shift: float = 1.0) -> Any:
    """The scheduler for sampler ``name`` built from the pipeline's own scheduler ``native``. ``flow_shift``
    multiplies a flow scheduler's own shift (time shifts compose so: 1 keeps the model's)."""
    shift = {} if flow_shift == 1.0 else {"shift": float(native.config["shift"]) * flow_shift}
    if name == NATIVE:
        return type(native).from_config(native.config, **shift) if shift else native
    cls = scheduler_class(family, name, native)
    if family == "stable-audio":
        cls = _cosine_time(cls)
    return cls.from_config(native.config, **SCHEDULERS[family][name][1], **shift)


def describe(family: str, native: Any) -> dict[str, str]:
    """Our sampler name -> the diffusers scheduler it runs (for inspect and /v1/models); ``native`` is the
    pipeline's scheduler or its class name."""
    name = native if isinstance(native, str) else type(native).__name__
    out = {NATIVE: f"{name} (the pipeline's own)"}
    for name, (cls_name, overrides) in SCHEDULERS.get(family, {}).items():
        extra = ", ".join(f"{k}={v}" for k, v in overrides.items())
        out[name] = f"{cls_name}({extra})" if extra else cls_name
    return out
