"""sampleforge: train, run and serve audio latent-diffusion models; ships a CPU-fast drum one-shot model.

    import sampleforge
    path = sampleforge.generate(prompt="punchy 808 kick", seed=1)          # the reference API → Path to a WAV
    gen = sampleforge.Generator.from_pretrained("drums-v2")
    audio = gen.generate(["kick", "snare"], n=4, steps=50, cfg_scale=3.0)  # Tensor (8, 88200)
    sampleforge.vary("my_snare.wav", strength=0.3, count=8)                 # → [Path] (audio-to-audio)
    sampleforge.morph(sampleforge.MorphEnd("kick", 1), sampleforge.MorphEnd("snare", 2), morph_steps=5)
    sampleforge.make_kit("mykit", prompt="dusty 808")                      # → the kit folder (SFZ, Hydrogen, ...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["generate", "Generator", "vary", "morph", "make_kit", "MorphEnd", "__version__"]
_WORKFLOW = ("vary", "morph", "make_kit")

if TYPE_CHECKING:
    from sampleforge.api import generate
    from sampleforge.pipeline import Generator, MorphEnd
    from sampleforge.workflow import make_kit, morph, vary


def __getattr__(name: str) -> Any:  # lazy: `import sampleforge` stays light (no torch until needed)
    if name == "Generator":
        from sampleforge.pipeline import Generator

        return Generator
    if name == "generate":
        from sampleforge.api import generate

        return generate
    if name == "MorphEnd":
        from sampleforge.pipeline import MorphEnd

        return MorphEnd
    if name in _WORKFLOW:
        from sampleforge import workflow

        return getattr(workflow, name)
    raise AttributeError(f"module 'sampleforge' has no attribute {name!r}")
