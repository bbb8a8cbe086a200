"""stable-audio-tools' own networks, imported for tests only, and a tiny random model written with them.

The package is installed without its dependencies (they pull torchaudio and another torch). Its pure-torch
modules (``models.dit``, ``models.transformer``, ``models.blocks``, ``models.autoencoders``' Oobleck and
AudioAutoencoder, ``models.bottleneck``' VAE, ``models.pretransforms``, ``models.adp``' NumberEmbedder,
``inference.sampling``, ``inference.utils``' prepare_audio) import once the names they import but these classes
never use are stood in for; the stand-ins are removed from ``sys.modules`` afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

PROMPT_MAX = 12
SEED_TEXT = 3


class _StandIn:
    """A name a module imports but the networks under test never call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a stand-in of a stable-audio-tools dependency was called")


STAND_INS: dict[str, tuple[str, ...]] = {
    "torchaudio": (), "torchaudio.transforms": ("Resample",), "k_diffusion": (),
    "alias_free_torch": ("Activation1d",), "einops_exts": ("rearrange_many",),
    "stable_audio_tools.models.diffusion": ("ConditionedDiffusionModel", "DAU1DCondWrapper", "UNet1DCondWrapper",
                                            "DiTWrapper"),
    "stable_audio_tools.models.factory": ("create_pretransform_from_config", "create_bottleneck_from_config"),
}
MODULES = {"dit": "models.dit", "autoencoders": "models.autoencoders", "adp": "models.adp",
           "bottleneck": "models.bottleneck", "pretransforms": "models.pretransforms",
           "sampling": "inference.sampling", "utils": "inference.utils"}


def load() -> types.SimpleNamespace:
    """stable-audio-tools' modules of ``MODULES`` by their short names (skips the test if absent)."""
    if "stable_audio_tools.models.dit" in sys.modules:
        return types.SimpleNamespace(**{k: sys.modules[f"stable_audio_tools.{v}"] for k, v in MODULES.items()})
    spec = importlib.util.find_spec("stable_audio_tools")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("stable-audio-tools is not installed (pip install --no-deps stable-audio-tools==0.0.19)")
    root = Path(spec.submodule_search_locations[0])
    added = []
    for pkg, folder in (("stable_audio_tools", root), ("stable_audio_tools.models", root / "models"),
                        ("stable_audio_tools.inference", root / "inference"),
                        ("stable_audio_tools.data", root / "data")):
        module = types.ModuleType(pkg)  # the package without its __init__ (which imports everything)
        module.__path__ = [str(folder)]
        sys.modules[pkg] = module
    patched: list[tuple[types.ModuleType, str]] = []  # names lent to a module already there (another stand-in)
    for name, attrs in STAND_INS.items():
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
        for attr in attrs:
            if not hasattr(sys.modules[name], attr):
                setattr(sys.modules[name], attr, _StandIn)
                patched.append((sys.modules[name], attr))
    sys.modules["torchaudio"].transforms = sys.modules["torchaudio.transforms"]  # type: ignore[attr-defined]
    try:
        return types.SimpleNamespace(**{k: importlib.import_module(f"stable_audio_tools.{v}")
                                        for k, v in MODULES.items()})
    finally:
        for name in added:
            del sys.modules[name]
        for module, attr in patched:
            delattr(module, attr)


def tiny_config(qk_norm: str = "ln", project_cond_tokens: bool = False, encoder_channels: int = 4,
                scale: float | None = None) -> dict[str, Any]:
    """A Stable Audio Open Small-shaped model_config.json, tiny: stereo 512 Hz, hop 8, a 2-s window (with the
    pretransform's latent ``scale`` when given)."""
    cfg: dict[str, Any] = {
        "model_type": "diffusion_cond", "sample_size": 1024, "sample_rate": 512, "audio_channels": 2,
        "model": {
            "pretransform": {"type": "autoencoder", "iterate_batch": True, "config": {
                "encoder": {"type": "oobleck", "config": {"in_channels": 2, "channels": encoder_channels,
                                                          "c_mults": [1, 2],
                                                          "strides": [2, 4], "latent_dim": 8, "use_snake": True}},
                "decoder": {"type": "oobleck", "config": {"out_channels": 2, "channels": 4, "c_mults": [1, 2],
                                                          "strides": [2, 4], "latent_dim": 4, "use_snake": True,
                                                          "final_tanh": False}},
                "bottleneck": {"type": "vae"}, "latent_dim": 4, "downsampling_ratio": 8, "io_channels": 2}},
            "conditioning": {"configs": [
                {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": PROMPT_MAX}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}}],
                "cond_dim": 64},
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_total"], "global_cond_ids": ["seconds_total"],
                "diffusion_objective": "rf_denoiser", "type": "dit",
                "config": {"io_channels": 4, "embed_dim": 128, "depth": 2, "num_heads": 2, "cond_token_dim": 64,
                           "global_cond_dim": 64, "project_cond_tokens": project_cond_tokens,
                           "transformer_type": "continuous_transformer", "attn_kwargs": {"qk_norm": qk_norm}}},
            "io_channels": 4},
    }
    if scale is not None:
        cfg["model"]["pretransform"]["scale"] = scale
    return cfg


def _randomise(module: nn.Module, gen: torch.Generator) -> None:
    """Every tensor moved off its (often zero or one) initial value, so that no branch is trivially empty."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.2)


def build_networks(cfg: dict[str, Any], seed: int = 0) -> dict[str, nn.Module]:
    """stable-audio-tools' DiT, Oobleck encoder and decoder, number embedder and T5 projection, random."""
    sat = load()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the modules' own initialisation draws from the global generator
    model = cfg["model"]
    ae = model["pretransform"]["config"]
    nets: dict[str, nn.Module] = {
        "dit": sat.dit.DiffusionTransformer(diffusion_objective=model["diffusion"]["diffusion_objective"],
                                            **model["diffusion"]["config"]),
        "encoder": sat.autoencoders.OobleckEncoder(**ae["encoder"]["config"]),
        "decoder": sat.autoencoders.OobleckDecoder(**ae["decoder"]["config"]),
        "seconds_total": sat.adp.NumberEmbedder(features=model["conditioning"]["cond_dim"]),
        "prompt": nn.Linear(8, model["conditioning"]["cond_dim"]),  # T5Conditioner.proj_out (T5 width 8)
    }
    for net in nets.values():
        _randomise(net, gen)
        net.eval()
    return nets


def state_dict(nets: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """The checkpoint's keys, as ConditionedDiffusionModelWrapper names them."""
    prefixes = {"dit": "model.model.", "encoder": "pretransform.model.encoder.",
                "decoder": "pretransform.model.decoder.",
                "seconds_total": "conditioner.conditioners.seconds_total.embedder.",
                "prompt": "conditioner.conditioners.prompt.proj_out."}
    return {prefixes[name] + k: v.contiguous() for name, net in nets.items() for k, v in net.state_dict().items()}


def write_model(out: Path, cfg: dict[str, Any], nets: dict[str, nn.Module], ckpt: bool = False) -> Path:
    """A tiny stable-audio-tools folder of ``nets``: model_config.json, model.safetensors (or model.ckpt), and
    the T5 prompt encoder in text_encoder/ + tokenizer/ (the real model reads t5-base from the Hugging Face
    cache)."""
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    from sampleforge.backends.tiny import _t5_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    (out / "model_config.json").write_text(json.dumps(cfg, indent=1))
    state = state_dict(nets)
    if ckpt:
        torch.save({"state_dict": state, "global_step": 1}, out / "model.ckpt")
    else:
        save_file(state, str(out / "model.safetensors"))
    tok = _t5_tokenizer(PROMPT_MAX)
    torch.manual_seed(SEED_TEXT)
    T5EncoderModel(T5Config(vocab_size=len(tok), d_model=8, d_ff=16, d_kv=4, num_heads=2,
                            num_layers=1)).save_pretrained(str(out / "text_encoder"))
    tok.save_pretrained(str(out / "tokenizer"))
    return out


def pretransform(cfg: dict[str, Any], nets: dict[str, nn.Module]) -> nn.Module:
    """stable-audio-tools' AutoencoderPretransform around an AudioAutoencoder of ``nets``' Oobleck encoder and
    decoder with its VAE bottleneck, as its factory builds it from ``model.pretransform``."""
    sat = load()
    pre = cfg["model"]["pretransform"]
    ae = pre["config"]
    model = sat.autoencoders.AudioAutoencoder(
        nets["encoder"], nets["decoder"], latent_dim=ae["latent_dim"], downsampling_ratio=ae["downsampling_ratio"],
        sample_rate=cfg["sample_rate"], io_channels=ae["io_channels"], bottleneck=sat.bottleneck.VAEBottleneck())
    return sat.pretransforms.AutoencoderPretransform(model, scale=pre.get("scale", 1.0),
                                                     iterate_batch=pre.get("iterate_batch", False))


@torch.inference_mode()
def generate(folder: Path, cfg: dict[str, Any], nets: dict[str, nn.Module], prompt: str, seed: int, steps: int,
             cfg_scale: float, seconds: float, init_audio: tuple[int, torch.Tensor] | None = None,
             init_noise: float = 1.0) -> torch.Tensor:
    """Audio (C, T) the way stable-audio-tools makes it: its DiT, sample_rf(pingpong) and pretransform. The
    conditioners' few lines (T5Conditioner, NumberConditioner, get_conditioning_inputs) and
    generate_diffusion_cond's audio-to-audio lines (prepare_audio, encode, sigma_max = init_noise_level) are
    restated here: T5Conditioner loads its encoder by name from the network."""
    from transformers import AutoTokenizer, T5EncoderModel

    sat = load()
    tok = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    t5 = T5EncoderModel.from_pretrained(str(folder / "text_encoder")).eval()
    enc = tok([prompt], truncation=True, max_length=PROMPT_MAX, padding="max_length", return_tensors="pt")
    mask = enc["attention_mask"].to(torch.bool)
    text = nets["prompt"](t5(input_ids=enc["input_ids"], attention_mask=mask)["last_hidden_state"])
    text = text * mask.unsqueeze(-1).float()
    number = cfg["model"]["conditioning"]["configs"][1]["config"]
    value = (torch.tensor([float(seconds)]).clamp(number["min_val"], number["max_val"]) - number["min_val"]) \
        / (number["max_val"] - number["min_val"])
    secs = nets["seconds_total"](value).unsqueeze(1)  # (1, 1, D)
    cross = torch.cat([text, secs], dim=1)
    glob = torch.cat([secs], dim=-1).squeeze(1)
    torch.manual_seed(seed)
    frames = cfg["sample_size"] // cfg["model"]["pretransform"]["config"]["downsampling_ratio"]
    noise = torch.randn([1, cfg["model"]["io_channels"], frames])
    pre = pretransform(cfg, nets)
    init, sampler_kwargs = None, {}
    if init_audio is not None:
        in_sr, audio = init_audio
        init = pre.encode(sat.utils.prepare_audio(audio, in_sr=in_sr, target_sr=cfg["sample_rate"],
                                                  target_length=cfg["sample_size"],
                                                  target_channels=pre.io_channels, device="cpu"))
        sampler_kwargs["sigma_max"] = init_noise
    latents = sat.sampling.sample_rf(nets["dit"], noise, init_data=init, steps=steps, sampler_type="pingpong",
                                     device="cpu", cross_attn_cond=cross, global_embed=glob, cfg_scale=cfg_scale,
                                     **sampler_kwargs)
    return pre.decode(latents)[0, :, : int(round(seconds * cfg["sample_rate"]))]
