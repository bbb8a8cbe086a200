"""The diffusion core: schedules, denoiser wrappers, samplers, guidance, and ``generate_latents``."""

from sampleforge.diffusion.denoiser import DiscreteDenoiser, FlowDenoiser
from sampleforge.diffusion.guidance import guidance
from sampleforge.diffusion.samplers import FLOW_SAMPLERS, SAMPLERS, get_sampler
from sampleforge.diffusion.sampling import SCHEDULES, generate_latents
from sampleforge.diffusion.schedules import alphas_cumprod, flow_times, sampling_sigmas

__all__ = [
    "DiscreteDenoiser",
    "FlowDenoiser",
    "guidance",
    "SAMPLERS",
    "FLOW_SAMPLERS",
    "get_sampler",
    "SCHEDULES",
    "generate_latents",
    "alphas_cumprod",
    "flow_times",
    "sampling_sigmas",
]
