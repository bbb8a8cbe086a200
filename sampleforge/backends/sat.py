"""stable-audio-tools models as a backend: Stable Audio Open Small and other rectified-flow DiT models saved
as a folder with ``model_config.json`` and ``model.safetensors`` (or a ``model.ckpt`` read with
``weights_only=True``).

Neither diffusers nor sampleforge installs stable-audio-tools (it needs torchaudio). Its networks map onto
diffusers modules by renaming the state dict in memory:

- the DiT (``model.model.*``) -> ``StableAudioDiTModel`` (fused ``to_qkv`` / ``to_kv`` split into q, k, v;
  the per-head ``q_norm`` / ``k_norm`` LayerNorms of ``qk_norm: "ln"`` set on each attention);
- the Oobleck decoder and encoder (``pretransform.model.decoder.*``, ``pretransform.model.encoder.*``) ->
  diffusers' ``OobleckDecoder`` and ``OobleckEncoder`` (the encoder only serves audio-to-audio: a folder
  without its weights still generates from text);
- number conditioners (``conditioner.conditioners.<id>.*``, e.g. ``seconds_total``) ->
  ``StableAudioNumberConditioner``; the T5 prompt encoder is not in the checkpoint: it is read from
  ``text_encoder/`` + ``tokenizer/`` beside the config, else from the Hugging Face cache by the name the
  config gives (``t5-base`` -> ``google-t5/t5-base``).

Sampling is ours: the flow times of stable-audio-tools (``rf_times``), classifier-free guidance against
zeroed cross-attention conditioning, and the ping-pong sampler (``diffusion.samplers``) or sampleforge's flow
samplers. Clip k starts from ``torch.randn((C, L), generator=Generator().manual_seed(seed + k))`` and the
ping-pong re-noising draws from the same generator, as stable-audio-tools does after
``torch.manual_seed(seed)``.

Audio-to-audio (``init_audio``, ``init_noise``) follows stable-audio-tools' ``generate_diffusion_cond``: the
init audio, padded or cut to the model's window, is encoded to the VAE posterior and sampled from it (the draw
comes from clip k's generator right after its starting noise), mixed with the noise as
``init * (1 - init_noise) + noise * init_noise``, and the flow times start at ``init_noise`` (``sample_rf``'s
``sigma_max``) instead of 1.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sampleforge.backends import memory
from sampleforge.backends.base import (
    DTYPES,
    BackendOptions,
    Callback,
    Generation,
    ParamSpace,
    RunMixin,
    batch,
    finish_foreign,
    fit_channels,
    read_init_audio,
    resolve_in,
)
from sampleforge.errors import CheckpointError, ParamError, UserInputError
from sampleforge.params import GenerationParams

DIT, DECODER, CONDITIONERS = "model.model.", "pretransform.model.decoder.", "conditioner.conditioners."
ENCODER = "pretransform.model.encoder."
# diffusion objective -> (samplers, the first the default; steps; cfg scale): stable-audio-tools' own defaults
OBJECTIVES: dict[str, tuple[tuple[str, ...], int, float]] = {
    "rf_denoiser": (("pingpong", "flow_euler", "flow_heun"), 8, 1.0),
    "rectified_flow": (("flow_euler", "flow_heun", "pingpong"), 50, 7.0),
}
DECODE_OVERLAP = 8  # latent frames of context on each side of a decode chunk
# ... and of an init-audio encode chunk: the encoder's dilated units reach further (SAO's: about +-8 frames);
# 16 makes the chunked latents the whole ones' to ~1e-5 of their range (tests/backends/test_sat_a2a.py)
ENCODE_OVERLAP = 16
# DiT options that change the network in ways StableAudioDiTModel cannot express -> the value it needs
DIT_FIXED: dict[str, Any] = {
    "transformer_type": "continuous_transformer", "patch_size": 1, "global_cond_type": "prepend",
    "timestep_cond_type": "global", "project_global_cond": True, "input_concat_dim": 0, "prepend_cond_dim": 0,
    "rotary_pos_emb": True, "conformer": False, "num_memory_tokens": 0, "use_sinusoidal_emb": False,
    "use_abs_pos_emb": False, "layer_scale": False, "remove_norms": False, "final_cross_attn_ix": -1,
}
DIT_KNOWN = {"io_channels", "embed_dim", "depth", "num_heads", "cond_token_dim", "global_cond_dim",
             "project_cond_tokens", "attn_kwargs", "zero_init_branch_outputs", "sliding_window", *DIT_FIXED}
DECODER_FIXED: dict[str, Any] = {"use_snake": True, "antialias_activation": False, "use_nearest_upsample": False}
ENCODER_FIXED: dict[str, Any] = {"use_snake": True, "antialias_activation": False}
ENCODER_DEFAULTS: dict[str, Any] = {"in_channels": 2, "channels": 128, "latent_dim": 32, "c_mults": [1, 2, 4, 8],
                                    "strides": [2, 4, 8, 8], "use_snake": False, "antialias_activation": False}


class SatFormatError(CheckpointError):
    """A stable-audio-tools model this backend cannot run; the message names the config field."""


@dataclass(frozen=True)
class SatConfig:
    """What sampleforge reads from ``model_config.json``."""

    sample_rate: int
    sample_size: int  # audio samples of the model's window
    objective: str
    dit: dict[str, Any]
    decoder: dict[str, Any]  # the Oobleck decoder's arguments
    encoder: dict[str, Any] | None  # the Oobleck encoder's arguments; None: audio-to-audio is not possible
    downsampling: int
    scale: float  # latents are multiplied by it before decoding
    latent_channels: int
    audio_channels: int
    cond_dim: int
    conditioners: dict[str, tuple[str, dict[str, Any]]]  # id -> (type, config)
    cross_ids: tuple[str, ...]
    global_ids: tuple[str, ...]
    no_encoder: str = ""  # why ``encoder`` is None

    @property
    def head_dim(self) -> int:
        return int(self.dit["embed_dim"]) // int(self.dit["num_heads"])

    @property
    def cross_dim(self) -> int:
        """Width of the conditioning tokens the DiT's cross-attention reads (after its projection)."""
        return int(self.dit["embed_dim"]) if self.dit.get("project_cond_tokens", True) \
            else int(self.dit["cond_token_dim"])

    @property
    def qk_norm(self) -> str:
        return str((self.dit.get("attn_kwargs") or {}).get("qk_norm", "none"))

    @property
    def final_tanh(self) -> bool:
        return bool(self.decoder.get("final_tanh", True))

    @property
    def frames(self) -> int:
        """Latent frames of the model's window."""
        return self.sample_size // self.downsampling


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            raise SatFormatError(f"model_config.json: {'.'.join(parts[:i])} must be an object, got {node!r}"[:300])
        if part not in node:
            raise SatFormatError(f"model_config.json: missing {dotted}")
        node = node[part]
    return node


def _require(where: str, options: dict[str, Any], fixed: dict[str, Any]) -> None:
    for key, needed in fixed.items():
        if key in options and options[key] != needed:
            raise SatFormatError(f"model_config.json: {where}.{key} = {options[key]!r} is not supported "
                                 f"(only {needed!r})")


def _int(tree: dict[str, Any], dotted: str, low: int = 1) -> int:
    """The whole number at ``dotted``, at least ``low``; SatFormatError naming the field otherwise."""
    value = _get(tree, dotted)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise SatFormatError(f"model_config.json: {dotted} must be a whole number, got {value!r}")
    if value < low:
        raise SatFormatError(f"model_config.json: {dotted} must be at least {low}, got {value!r}")
    return int(value)


def read_config(folder: Path) -> SatConfig:
    """``model_config.json`` -> SatConfig; SatFormatError naming the file and the first field this backend cannot
    run (or cannot read: a wrong type, a window shorter than one latent frame, heads that do not divide the
    width)."""
    path = folder / "model_config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SatFormatError(f"{path}: unreadable ({exc})") from None
    if not isinstance(raw, dict):
        raise SatFormatError(f"{path}: not a JSON object (got {type(raw).__name__})")
    try:
        return _read_config(raw)
    except SatFormatError as exc:
        raise SatFormatError(str(exc).replace("model_config.json", str(path), 1)) from None
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:  # a field of the wrong type
        raise SatFormatError(f"{path}: a field has the wrong type or shape ({type(exc).__name__}: {exc})") from None


def _read_config(raw: dict[str, Any]) -> SatConfig:
    if raw.get("model_type") != "diffusion_cond":
        raise SatFormatError(f"model_config.json: model_type {raw.get('model_type')!r} is not supported "
                             "(only diffusion_cond)")
    diffusion = _get(raw, "model.diffusion")
    objective = diffusion.get("diffusion_objective", "v")
    if objective not in OBJECTIVES:
        raise SatFormatError(f"model_config.json: diffusion_objective {objective!r} is not supported (only "
                             f"{', '.join(OBJECTIVES)}; Stable Audio Open 1.0 runs as a diffusers folder: "
                             "hf:stabilityai/stable-audio-open-1.0)")
    if diffusion.get("type") != "dit":
        raise SatFormatError(f"model_config.json: model.diffusion.type {diffusion.get('type')!r} is not supported "
                             "(only dit)")
    dit = dict(_get(raw, "model.diffusion.config"))
    unknown = sorted(set(dit) - DIT_KNOWN)
    if unknown:
        raise SatFormatError(f"model_config.json: model.diffusion.config.{unknown[0]} is not supported")
    _require("model.diffusion.config", dit, DIT_FIXED)
    attn = dict(dit.get("attn_kwargs") or {})
    if set(attn) - {"qk_norm"} or attn.get("qk_norm", "none") not in ("none", "ln"):
        raise SatFormatError(f"model_config.json: model.diffusion.config.attn_kwargs {attn} is not supported "
                             "(only qk_norm none or ln)")
    for key in ("io_channels", "embed_dim", "depth", "num_heads", "cond_token_dim", "global_cond_dim"):
        _int(raw, f"model.diffusion.config.{key}")
    if dit["embed_dim"] % dit["num_heads"]:
        raise SatFormatError(f"model_config.json: model.diffusion.config.num_heads {dit['num_heads']} does not "
                             f"divide embed_dim {dit['embed_dim']}")
    if set(diffusion.get("input_concat_ids", [])) | set(diffusion.get("prepend_cond_ids", [])):
        raise SatFormatError("model_config.json: input_concat_ids / prepend_cond_ids are not supported")
    pre = _get(raw, "model.pretransform")
    if pre.get("type") != "autoencoder" or _get(pre, "config.decoder.type") != "oobleck":
        raise SatFormatError("model_config.json: model.pretransform must be an autoencoder with an oobleck decoder")
    if (pre["config"].get("bottleneck") or {}).get("type", "vae") != "vae":
        raise SatFormatError("model_config.json: model.pretransform.config.bottleneck: only vae is supported")
    decoder = dict(_get(pre, "config.decoder.config"))
    _require("model.pretransform.config.decoder.config", {**{"use_snake": False}, **decoder}, DECODER_FIXED)
    encoder, no_encoder = _encoder_config(pre["config"])
    configs = _get(raw, "model.conditioning.configs")
    if not isinstance(configs, list) or not all(isinstance(c, dict) and "id" in c and "type" in c for c in configs):
        raise SatFormatError("model_config.json: model.conditioning.configs must be a list of {\"id\", \"type\", "
                             "\"config\"} objects")
    conditioners = {str(c["id"]): (str(c["type"]), dict(c.get("config", {}))) for c in configs}
    cross_ids = tuple(diffusion.get("cross_attention_cond_ids", []))
    global_ids = tuple(diffusion.get("global_cond_ids", []))
    for cid in (*cross_ids, *global_ids):
        kind = conditioners.get(cid, ("missing", {}))[0]
        if kind not in ("t5", "number") or (kind == "t5" and cid in global_ids):
            raise SatFormatError(f"model_config.json: conditioner {cid!r} ({kind}) is not supported "
                                 "(only t5 prompts and numbers such as seconds_total)")
    downsampling = _int(raw, "model.pretransform.config.downsampling_ratio")
    sample_size = _int(raw, "sample_size")
    if sample_size < downsampling:
        raise SatFormatError(f"model_config.json: sample_size {sample_size} is shorter than one latent frame "
                             f"(model.pretransform.config.downsampling_ratio {downsampling})")
    return SatConfig(
        sample_rate=_int(raw, "sample_rate"), sample_size=sample_size, objective=objective,
        dit=dit, decoder=decoder, encoder=encoder, no_encoder=no_encoder, downsampling=downsampling,
        scale=float(pre.get("scale", 1.0)), latent_channels=_int(raw, "model.io_channels"),
        audio_channels=_int(raw, "audio_channels") if "audio_channels" in raw else int(decoder.get("out_channels", 2)),
        cond_dim=_int(raw, "model.conditioning.cond_dim"), conditioners=conditioners, cross_ids=cross_ids,
        global_ids=global_ids,
    )


def _encoder_config(autoencoder: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The pretransform's ``config`` -> (the Oobleck encoder's arguments, "") or (None, why audio-to-audio
    cannot run): a text-to-audio model does not need its encoder."""
    enc = autoencoder.get("encoder") or {}
    where = "model_config.json: model.pretransform.config.encoder"
    if enc.get("type") != "oobleck":
        return None, f"{where} is not an oobleck encoder"
    conf = {**ENCODER_DEFAULTS, **(enc.get("config") or {})}  # stable-audio-tools' own defaults
    for key, needed in ENCODER_FIXED.items():
        if conf[key] != needed:
            return None, f"{where}.config.{key} must be {needed}"
    latent = int((autoencoder.get("decoder") or {}).get("config", {}).get("latent_dim", 0))
    if int(conf["latent_dim"]) != 2 * latent:
        return None, f"{where}.config.latent_dim {conf['latent_dim']} is not twice the decoder's {latent} (a VAE's " \
                     "mean and scale)"
    return conf, ""


# ---- the weights -------------------------------------------------------------------------------------


def read_weights(folder: Path) -> dict[str, Tensor]:
    """``model.safetensors`` (else the first ``*.safetensors``, else ``model.ckpt``'s ``state_dict``, read with
    ``weights_only=True``) -> the flat state dict."""
    files = sorted(folder.glob("*.safetensors"), key=lambda f: f.name != "model.safetensors")
    if files:
        from safetensors.torch import load_file

        try:
            return load_file(str(files[0]))
        except Exception as exc:  # SafetensorError for a damaged file
            raise CheckpointError(f"{files[0]}: unreadable safetensors file ({exc})") from None
    ckpts = sorted(folder.glob("*.ckpt"))
    if not ckpts:
        raise CheckpointError(f"{folder}: missing model.safetensors (the weights that model_config.json describes)")
    from sampleforge.legacy import load_weights_only

    obj = load_weights_only(ckpts[0])
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpts[0]}: no state_dict inside")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


# stable-audio-tools DiT name -> diffusers StableAudioDiTModel name (applied in order, on whole dotted parts)
DIT_RENAMES = (
    (r"^timestep_features\.weight$", "time_proj.weight"),
    (r"^to_timestep_embed\.", "timestep_proj."),
    (r"^to_global_embed\.", "global_proj."),
    (r"^to_cond_embed\.", "cross_attention_proj."),
    (r"^transformer\.project_in\.", "proj_in."),
    (r"^transformer\.project_out\.", "proj_out."),
    (r"^transformer\.layers\.(\d+)\.", r"transformer_blocks.\1."),
    (r"\.pre_norm\.", ".norm1."),
    (r"\.cross_attend_norm\.", ".norm2."),
    (r"\.ff_norm\.", ".norm3."),
    (r"\.self_attn\.", ".attn1."),
    (r"\.cross_attn\.", ".attn2."),
    (r"\.to_out\.", ".to_out.0."),
    (r"\.q_norm\.", ".norm_q."),
    (r"\.k_norm\.", ".norm_k."),
    (r"\.ff\.ff\.", ".ff.net."),
    (r"\.gamma$", ".weight"),
    (r"\.beta$", ".bias"),
)


def _rename(key: str, rules: Sequence[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def convert_dit(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor | None]:
    """The DiT's tensors (``model.model.*``) -> (StableAudioDiTModel state dict, the rotary ``inv_freq`` or None)."""
    out: dict[str, Tensor] = {}
    inv_freq = None
    for key, value in state.items():
        if not key.startswith(DIT):
            continue
        key = key[len(DIT):]
        if key == "transformer.rotary_pos_emb.inv_freq":
            inv_freq = value
            continue
        new = _rename(key, DIT_RENAMES)
        if new == "time_proj.weight":
            value = value.reshape(-1)  # (n, 1) Fourier weights -> (n,)
        if new.endswith(".to_qkv.weight"):
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out[new.replace(".to_qkv.", f".to_{name}.")] = part
        elif new.endswith(".to_kv.weight"):
            for name, part in zip("kv", value.chunk(2, dim=0), strict=True):
                out[new.replace(".to_kv.", f".to_{name}.")] = part
        else:
            out[new] = value
    return out, inv_freq


# inside every Oobleck residual unit (Snake, dilated conv, Snake, 1x1 conv)
RES_UNIT_RENAMES = (
    (r"\.res_unit(\d)\.layers\.0\.", r".res_unit\1.snake1."),
    (r"\.res_unit(\d)\.layers\.1\.", r".res_unit\1.conv1."),
    (r"\.res_unit(\d)\.layers\.2\.", r".res_unit\1.snake2."),
    (r"\.res_unit(\d)\.layers\.3\.", r".res_unit\1.conv2."),
)


def _outer_renames(blocks: int) -> tuple[tuple[str, str], ...]:
    """An Oobleck stack's ``layers.0`` (first conv), ``layers.1..blocks`` (blocks), final Snake and conv."""
    return ((r"^layers\.0\.", "conv1."), (rf"^layers\.{blocks + 1}\.", "snake1."),
            (rf"^layers\.{blocks + 2}\.", "conv2."))


def _block_renames(parts: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """stable-audio-tools ``layers.N.layers.i.`` -> diffusers ``block.N.<parts[i]>.``."""
    return tuple((rf"^layers\.(\d+)\.layers\.{i}\.", rf"block.\1.{name}.") for i, name in enumerate(parts))


def decoder_renames(blocks: int) -> tuple[tuple[str, str], ...]:
    """Rules for an Oobleck decoder of ``blocks`` up-sampling blocks (stable-audio-tools ``layers.N`` ->
    diffusers ``conv1`` / ``block.i`` / ``snake1`` / ``conv2``); block numbers are shifted by ``_oobleck``."""
    return (
        *_outer_renames(blocks),
        *_block_renames(("snake1", "conv_t1", "res_unit1", "res_unit2", "res_unit3")),
        *RES_UNIT_RENAMES,
    )


def encoder_renames(blocks: int) -> tuple[tuple[str, str], ...]:
    """Rules for an Oobleck encoder of ``blocks`` down-sampling blocks (three residual units, Snake, strided
    conv each)."""
    return (
        *_outer_renames(blocks),
        *_block_renames(("res_unit1", "res_unit2", "res_unit3", "snake1", "conv1")),
        *RES_UNIT_RENAMES,
    )


def _oobleck(state: dict[str, Tensor], prefix: str, rules: Sequence[tuple[str, str]]) -> dict[str, Tensor]:
    """The tensors under ``prefix``, renamed by ``rules`` onto diffusers' Oobleck modules."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        new = _rename(key[len(prefix):], rules)
        # stable-audio-tools numbers blocks from 1 (layers.0 is the first conv); diffusers from 0
        new = re.sub(r"^block\.(\d+)\.", lambda m: f"block.{int(m.group(1)) - 1}.", new)
        if new.endswith((".alpha", ".beta")):
            value = value.reshape(1, -1, 1)  # Snake parameters (C,) -> (1, C, 1)
        out[new] = value
    return out


def convert_decoder(state: dict[str, Tensor], blocks: int) -> dict[str, Tensor]:
    """The Oobleck decoder's tensors (``pretransform.model.decoder.*``) -> diffusers ``OobleckDecoder``."""
    return _oobleck(state, DECODER, decoder_renames(blocks))


def convert_encoder(state: dict[str, Tensor], blocks: int) -> dict[str, Tensor]:
    """The Oobleck encoder's tensors (``pretransform.model.encoder.*``) -> diffusers ``OobleckEncoder``."""
    return _oobleck(state, ENCODER, encoder_renames(blocks))


def convert_conditioner(state: dict[str, Tensor], cid: str) -> dict[str, Tensor]:
    """A number conditioner's tensors -> ``StableAudioNumberConditioner``; a T5 conditioner's ``proj_out``."""
    prefix = f"{CONDITIONERS}{cid}."
    out = {}
    for key, value in state.items():
        if key.startswith(prefix):
            out[key[len(prefix):].replace("embedder.embedding.", "time_positional_embedding.")] = value
    return out


def _load(module: nn.Module, sd: dict[str, Tensor], what: str, folder: Path) -> None:
    """``module.load_state_dict(sd)``, strict; a mismatch is a CheckpointError naming one key."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    if missing or extra:
        name = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise CheckpointError(f"{folder}: the {what} weights do not match model_config.json ({name}; "
                              f"{len(missing)} missing, {len(extra)} unexpected)")
    bad = next((k for k in expected if tuple(expected[k].shape) != tuple(sd[k].shape)), None)
    if bad is not None:
        raise CheckpointError(f"{folder}: {what} weight {bad} has shape {tuple(sd[bad].shape)}, model_config.json "
                              f"gives {tuple(expected[bad].shape)}")
    module.load_state_dict(sd)


# ---- the networks ------------------------------------------------------------------------------------


def build_dit(cfg: SatConfig) -> nn.Module:
    """An empty ``StableAudioDiTModel`` of the config's shape (with per-head q/k LayerNorms for qk_norm ln)."""
    from diffusers import StableAudioDiTModel

    d = cfg.dit
    head = cfg.head_dim
    dit: Any = StableAudioDiTModel(
        sample_size=cfg.frames, in_channels=int(d["io_channels"]), num_layers=int(d["depth"]),
        attention_head_dim=head, num_attention_heads=int(d["num_heads"]),
        num_key_value_attention_heads=cfg.cross_dim // head, out_channels=int(d["io_channels"]),
        cross_attention_dim=cfg.cross_dim, time_proj_dim=256, global_states_input_dim=int(d["global_cond_dim"]),
        cross_attention_input_dim=int(d["cond_token_dim"]),
    )
    if cfg.qk_norm == "ln":
        for block in dit.transformer_blocks:
            for attn in (block.attn1, block.attn2):
                attn.norm_q = nn.LayerNorm(head, eps=1e-6)
                attn.norm_k = nn.LayerNorm(head, eps=1e-6)
    return dit


def build_decoder(cfg: SatConfig) -> nn.Module:
    from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDecoder

    d = cfg.decoder
    return OobleckDecoder(channels=int(d["channels"]), input_channels=int(d["latent_dim"]),
                          audio_channels=int(d.get("out_channels", cfg.audio_channels)),
                          upsampling_ratios=list(d["strides"])[::-1], channel_multiples=list(d["c_mults"]))


def build_encoder(conf: dict[str, Any]) -> nn.Module:
    """An empty diffusers ``OobleckEncoder`` of a stable-audio-tools encoder config (its output conv is as wide
    as ``latent_dim``, the posterior's mean and scale, where diffusers ties it to ``channels``)."""
    from diffusers.models.autoencoders.autoencoder_oobleck import OobleckEncoder
    from torch.nn.utils import weight_norm

    channels, mults = int(conf["channels"]), list(conf["c_mults"])
    encoder = OobleckEncoder(encoder_hidden_size=channels, audio_channels=int(conf["in_channels"]),
                             downsampling_ratios=list(conf["strides"]), channel_multiples=mults)
    if int(conf["latent_dim"]) != channels:
        encoder.conv2 = weight_norm(nn.Conv1d(channels * mults[-1], int(conf["latent_dim"]), kernel_size=3,
                                              padding=1))
    return encoder


def rotary(inv_freq: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """(cos, sin), each (length, 2 * len(inv_freq)): stable-audio-tools' rotary embedding (halves, not
    interleaved) for positions 0..length-1."""
    freqs = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq.float().cpu())
    freqs = torch.cat([freqs, freqs], dim=-1)
    return freqs.cos(), freqs.sin()


def default_inv_freq(head_dim: int) -> Tensor:
    dim = max(head_dim // 2, 32)
    return 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))


def rf_times(steps: int, sigma_max: float = 1.0, shift: float = 1.0) -> Tensor:
    """(steps + 1,) flow times from ``sigma_max`` to 0, evenly spaced in log-SNR from that of ``sigma_max``
    (-6 for 1) to 2 (stable-audio-tools' ``sample_rf`` schedule); all zero for ``sigma_max`` 0.

    ``shift`` moves the times toward the noisy end as SD3's time shift does (``u' = s u / (1 + (s - 1) u)``),
    applied to ``u = t / sigma_max`` so that the grid still starts at ``sigma_max``; 1 is the schedule as it is."""
    if sigma_max <= 0:
        return torch.zeros(steps + 1)
    logsnr_max = math.log((1 - sigma_max) / sigma_max + 1e-6) if sigma_max < 1 else -6.0
    t = torch.sigmoid(-torch.linspace(logsnr_max, 2, steps + 1))
    top = min(sigma_max, 1.0)
    t[0], t[-1] = top, 0.0
    if shift != 1.0:
        u = t / top
        t = top * shift * u / (1 + (shift - 1) * u)
    return t


def t5_repo(name: str) -> str:
    """stable-audio-tools' T5 name -> its Hugging Face repository (``t5-base`` -> ``google-t5/t5-base``)."""
    return name if "/" in name else f"google-t5/{name}"


@dataclass
class Conditioning:
    """The DiT's conditioning for a batch: cross-attention tokens (B, L, D), global vector (B, 1, G), CFG scale."""

    cross: Tensor
    global_: Tensor
    scale: float


class SATBackend(RunMixin):
    """A stable-audio-tools DiT + Oobleck model (e.g. Stable Audio Open Small) on diffusers modules."""

    kind = "stable-audio-tools"

    def __init__(self, path: Path, options: BackendOptions | None = None, spec: str | None = None) -> None:
        from sampleforge.backends.diffusers_backend import quiet, silence_libraries

        silence_libraries()
        self.options = options or BackendOptions()
        self.path = path
        self.cfg = read_config(path)
        self.device = self.options.torch_device()
        self.precision = self.options.precision
        self.dtype = DTYPES[self.precision]
        state = read_weights(path)
        dit_sd, inv_freq = convert_dit(state)
        if not dit_sd:
            raise CheckpointError(f"{path}: no DiT weights (model.model.*) in the checkpoint")
        with quiet():  # weight_norm's deprecation notice
            self.dit, self.decoder = build_dit(self.cfg), build_decoder(self.cfg)
        _load(self.dit, dit_sd, "DiT", path)
        self.inv_freq = inv_freq if inv_freq is not None else default_inv_freq(self.cfg.head_dim)
        _load(self.decoder, convert_decoder(state, len(self.cfg.decoder["c_mults"])), "decoder", path)
        self.encoder, self.no_encoder = self._encoder(state)
        self.numbers = self._number_conditioners(state)
        self.notes: list[str] = []
        self.tokenizer, self.text_encoder, self.prompt_proj = self._text_encoder(state)
        if self.options.quantize == "int8":
            if self.device.type != "cpu" or self.precision != "fp32":
                raise UserInputError("int8 quantisation runs on the CPU in fp32 (use --device cpu --precision fp32)")
            self.dit = memory.quantize_int8(self.dit)
        if self.options.offload == "model":
            self.notes.append("CPU offload is not available for stable-audio-tools models; running without it")
        for module in self._modules():
            module.to(self.device, self.dtype).eval().requires_grad_(False)
        self.name = path.name if not (spec or "").startswith("hf:") else str(spec)[3:]
        self.id = spec or str(path)
        self.sample_rate = self.cfg.sample_rate
        samplers, steps, cfg_scale = OBJECTIVES[self.cfg.objective]
        window = self.cfg.sample_size / self.sample_rate
        self._space = ParamSpace(
            samplers=samplers, min_duration=max(0.1, self.cfg.downsampling / self.sample_rate),
            max_duration=window, default_duration=float(math.floor(window)) if window >= 1 else window,
            default_steps=steps, default_cfg=cfg_scale,
            channels=1 if self.options.channels == "mono" else self.cfg.audio_channels,
            settings=("init_audio", "init_noise") if self.encoder is not None else (),
            sampling=("eta", "flow_shift"),  # sampleforge's flow samplers on stable-audio-tools' own time grid
        )
        self.samplers = self._space.samplers

    def _modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.dit, self.decoder, self.text_encoder, *self.numbers.values()]
        return mods + [m for m in (self.prompt_proj, self.encoder) if m is not None]

    def _encoder(self, state: dict[str, Tensor]) -> tuple[nn.Module | None, str]:
        """(the Oobleck encoder, "") or (None, why audio-to-audio is not possible): the folder may leave it out."""
        from sampleforge.backends.diffusers_backend import quiet

        if self.cfg.encoder is None:
            return None, self.cfg.no_encoder
        sd = convert_encoder(state, len(self.cfg.encoder["c_mults"]))
        if not sd:
            return None, f"{self.path}: no Oobleck encoder weights ({ENCODER}*) in the checkpoint"
        with quiet():  # weight_norm's deprecation notice
            encoder = build_encoder(self.cfg.encoder)
        _load(encoder, sd, "encoder", self.path)
        return encoder, ""

    def _number_conditioners(self, state: dict[str, Tensor]) -> dict[str, nn.Module]:
        from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioNumberConditioner

        out: dict[str, nn.Module] = {}
        for cid, (kind, conf) in self.cfg.conditioners.items():
            if kind != "number" or cid not in (*self.cfg.cross_ids, *self.cfg.global_ids):
                continue
            module = StableAudioNumberConditioner(self.cfg.cond_dim, float(conf.get("min_val", 0)),
                                                  float(conf.get("max_val", 1)))
            _load(module, convert_conditioner(state, cid), f"{cid} conditioner", self.path)
            out[cid] = module
        return out

    def _text_encoder(self, state: dict[str, Tensor]) -> tuple[Any, nn.Module, nn.Module | None]:
        """The T5 encoder and tokenizer (``text_encoder/`` + ``tokenizer/`` beside the config, else the Hugging
        Face cache) and the conditioner's ``proj_out`` Linear if the checkpoint has one."""
        from transformers import AutoTokenizer, T5EncoderModel

        from sampleforge.backends.diffusers_backend import quiet
        from sampleforge.backends.resolve import hf_snapshot

        cid = self.prompt_id
        name = str(self.cfg.conditioners[cid][1].get("t5_model_name", "t5-base"))
        local = self.path / "text_encoder"
        if local.is_dir():
            enc_path = local
            tok_path = self.path / "tokenizer" if (self.path / "tokenizer").is_dir() else local
        else:
            enc_path = tok_path = hf_snapshot(t5_repo(name))
        try:
            with quiet():
                tokenizer = AutoTokenizer.from_pretrained(str(tok_path), local_files_only=True)
                encoder = T5EncoderModel.from_pretrained(str(enc_path), local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{enc_path}: the T5 prompt encoder does not load: {first}") from None
        proj_sd = convert_conditioner(state, cid)
        proj = None
        if proj_sd:
            weight = proj_sd["proj_out.weight"]
            proj = nn.Linear(weight.shape[1], weight.shape[0], bias="proj_out.bias" in proj_sd)
            _load(proj, {k.removeprefix("proj_out."): v for k, v in proj_sd.items()}, "prompt projection", self.path)
        elif encoder.config.d_model != self.cfg.cond_dim:
            raise CheckpointError(f"{self.path}: T5 width {encoder.config.d_model} differs from cond_dim "
                                  f"{self.cfg.cond_dim} and the checkpoint has no {CONDITIONERS}{cid}.proj_out")
        return tokenizer, encoder, proj

    @property
    def prompt_id(self) -> str:
        ids = [cid for cid in self.cfg.cross_ids if self.cfg.conditioners[cid][0] == "t5"]
        if not ids:
            raise SatFormatError("model_config.json: no t5 prompt conditioner among cross_attention_cond_ids")
        return ids[0]

    @property
    def space(self) -> ParamSpace:
        return self._space

    def check_prompt(self, prompt: str) -> list[str]:
        limit = int(self.cfg.conditioners[self.prompt_id][1].get("max_length", 128))
        n = len(self.tokenizer(prompt).input_ids)
        return [f"prompt is {n} tokens; the text encoder reads the first {limit}"] if n > limit else []

    def vocab(self) -> dict[str, int]:
        return {}

    def resolve(self, params: GenerationParams) -> GenerationParams:
        if params.init_audio is None and params.init_noise is not None:
            raise ParamError("init_noise", "needs the audio to start from (init_audio)", mentions=("init_audio",))
        if params.init_audio is not None and self.encoder is None:
            raise ParamError("init_audio", f": audio-to-audio needs the VAE encoder, and {self.no_encoder}")
        resolved = resolve_in(self._space, params, self.precision)
        if resolved.init_audio is not None:  # a missing or unreadable file is refused before sampling starts
            read_init_audio(resolved.init_audio, self.sample_rate, 1)
        return resolved

    # ---- conditioning and sampling ---------------------------------------------------------------------
    @torch.inference_mode()
    def condition(self, prompts: list[str], seconds: float, cfg_scale: float) -> Conditioning:
        """prompts (B) and the clip length -> the DiT's cross-attention tokens and global vector."""
        limit = int(self.cfg.conditioners[self.prompt_id][1].get("max_length", 128))
        parts: dict[str, Tensor] = {}
        tok = self.tokenizer(prompts, truncation=True, max_length=limit, padding="max_length", return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        emb = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.prompt_proj is not None:
            emb = self.prompt_proj(emb)
        parts[self.prompt_id] = emb * mask.unsqueeze(-1).to(emb.dtype)
        values = torch.full((len(prompts),), float(seconds), device=self.device)
        for cid, module in self.numbers.items():
            parts[cid] = module(values)  # (B, 1, D)
        cross = torch.cat([parts[c] for c in self.cfg.cross_ids], dim=1)
        glob = torch.cat([parts[c] for c in self.cfg.global_ids], dim=-1)
        return Conditioning(cross.to(self.dtype), glob.to(self.dtype), cfg_scale)

    def velocity(self, x: Tensor, t: Tensor, cond: Conditioning) -> Tensor:
        """x_t (B, C, L) at times t (B,) -> velocity (B, C, L); CFG against zeroed cross-attention tokens."""
        x, t = x.to(self.dtype), t.to(self.dtype)
        cos, sin = rotary(self.inv_freq, x.shape[-1] + 1)
        emb = (cos.to(self.device), sin.to(self.device))
        if cond.scale == 1.0:
            return self.dit(x, t, encoder_hidden_states=cond.cross, global_hidden_states=cond.global_,
                            rotary_embedding=emb, return_dict=False)[0]
        out = self.dit(torch.cat([x, x]), torch.cat([t, t]),
                       encoder_hidden_states=torch.cat([cond.cross, torch.zeros_like(cond.cross)]),
                       global_hidden_states=torch.cat([cond.global_, cond.global_]), rotary_embedding=emb,
                       return_dict=False)[0]
        yes, no = out.chunk(2)
        return no + (yes - no) * cond.scale

    @torch.inference_mode()
    def encode(self, audio: Tensor, generators: Sequence[torch.Generator], chunk_s: float | None = None) -> Tensor:
        """audio (1, C, T) -> latents (B, latent channels, T / downsampling): one draw from the VAE posterior
        per generator (clip), divided by the pretransform's scale, as stable-audio-tools' ``encode`` does. The
        encoder runs in chunks of ``chunk_s`` seconds (whole latent frames, ENCODE_OVERLAP frames of context)
        when set: the real SAO Small encoder needs ~1.3 GiB for its 11.9-s window in one piece."""
        from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDiagonalGaussianDistribution

        assert self.encoder is not None
        x = audio.to(self.device, self.dtype)
        if chunk_s is None:
            params = self.encoder(x)
        else:
            hop = self.cfg.downsampling
            frames = max(1, int(round(chunk_s * self.sample_rate / hop)))
            params = memory.in_chunks(self.encoder, x, frames * hop, ENCODE_OVERLAP * hop, dim=-1)
        post = OobleckDiagonalGaussianDistribution(params)
        draws = torch.stack([torch.randn(tuple(post.mean.shape[1:]), generator=g) for g in generators])
        return (post.mean + post.std * draws.to(self.device, self.dtype)).float() / self.cfg.scale

    def init_latents(self, path: str, generators: Sequence[torch.Generator], chunk_s: float | None = None) -> Tensor:
        """The init audio file, padded with silence or cut to the model's window -> its latents (B, C, L) on
        the CPU (``encode``, in chunks of ``chunk_s`` seconds when set)."""
        assert self.cfg.encoder is not None
        audio = read_init_audio(path, self.sample_rate, int(self.cfg.encoder["in_channels"]))
        n = self.cfg.sample_size
        audio = torch.nn.functional.pad(audio[..., :n], (0, max(0, n - audio.shape[-1])))
        return self.encode(audio, generators, chunk_s).cpu()

    def decode(self, latents: Tensor, chunk_s: float | None = None) -> Tensor:
        """latents (B, C, L) -> waveform (B, channels, L * downsampling); in chunks of ``chunk_s`` seconds."""
        def run(z: Tensor) -> Tensor:
            out = self.decoder(z * self.cfg.scale)
            return torch.tanh(out) if self.cfg.final_tanh else out

        z = latents.to(self.dtype)
        with torch.inference_mode():
            if chunk_s is None:
                return run(z)
            frames = max(1, int(round(chunk_s * self.sample_rate / self.cfg.downsampling)))
            return memory.in_chunks(run, z, frames, DECODE_OVERLAP, dim=-1)

    def run(self, params: GenerationParams, prompts: Sequence[str] | None = None, vocoder: bool = True,
            callback: Callback | None = None, normalize: str | None = "peak") -> Generation:
        """``params.count`` clips per prompt -> Generation with audio (B, T) (mono) or (B, C, T), peak 0.95
        unless ``normalize`` is None. The model's whole window is sampled (from ``init_audio``'s latents mixed
        with the noise when it is given), then cut to ``duration``."""
        from sampleforge.diffusion.denoiser import FlowDenoiser
        from sampleforge.diffusion.samplers import get_sampler

        p = self.resolve(params)
        b = batch(p, prompts)
        assert p.duration is not None and p.sampler is not None and p.steps is not None and p.cfg_scale is not None
        warnings = sorted({w for x in set(b.prompts) for w in self.check_prompt(x)}) + list(self.notes)
        if p.knobs():
            warnings.append(f"{self.name} has no timbre knobs: {', '.join(sorted(p.knobs()))} ignored")
        gens = [torch.Generator().manual_seed(s) for s in b.seeds]
        noise = torch.stack([torch.randn(self.cfg.latent_channels, self.cfg.frames, generator=g) for g in gens])
        start, times, peaks = noise, rf_times(p.steps, shift=p.flow_shift), {}
        chunk = p.decode_chunk if p.decode_chunk is not None else self.options.decode_chunk  # encode and decode
        if p.init_audio is not None:  # stable-audio-tools' sample_rf with init_data and sigma_max
            sigma = 1.0 if p.init_noise is None else float(p.init_noise)
            if p.init_noise is None:
                warnings.append("init_noise 1 (the default) re-noises all of init_audio: nothing of it is kept; "
                                "lower it (e.g. to 0.6) to keep some")
            with memory.measure_peak(self.device) as peaks["encode"]:
                init = self.init_latents(p.init_audio, gens, chunk)
            start, times = init * (1 - sigma) + noise * sigma, rf_times(p.steps, sigma, p.flow_shift)
        with memory.measure_peak(self.device) as peaks["sample"], torch.inference_mode():
            cond = self.condition(b.prompts, p.duration, p.cfg_scale)
            latents = start.to(self.device, self.dtype)
            if float(times[0]) > 0:  # init_noise 0 keeps the init audio's latents as they are
                latents = get_sampler(p.sampler)(FlowDenoiser(self.velocity, time_scale=1.0), latents, times,
                                                 cond=cond, generator=gens, callback=callback, eta=p.eta)
        with memory.measure_peak(self.device) as peaks["decode"]:
            raw = self.decode(latents, chunk)[..., : int(round(p.duration * self.sample_rate))].float().cpu()
        stats = {f"{label}_s": peak.seconds for label, peak in peaks.items()}
        for label, peak in peaks.items():
            if peak.mib is not None:
                stats[f"{label}_peak_mib"] = peak.mib
        raw = fit_channels(raw, p.channels or self.options.channels)
        return Generation(audio=finish_foreign(raw, normalize), prompts=b.prompts, seeds=b.seeds, params=p,
                          warnings=warnings, latents=latents.float().cpu(), raw=raw, stats=stats)

    def describe(self) -> dict[str, Any]:
        comps = {name: {"class": type(m).__name__, "parameters": sum(q.numel() for q in m.parameters())}
                 for name, m in (("transformer", self.dit), ("decoder", self.decoder), ("encoder", self.encoder),
                                 ("text_encoder", self.text_encoder)) if m is not None}
        return {"kind": self.kind, "format": "stable-audio-tools", "path": str(self.path), "id": self.id,
                "sample_rate": self.sample_rate, "objective": self.cfg.objective, "components": comps,
                "samplers": {s: "sampleforge's sampler on stable-audio-tools' flow times" for s in self.samplers},
                "audio_to_audio": self.no_encoder or "yes (init_audio, init_noise)",
                "space": self._space.as_dict(), "options": asdict(self.options)}
