"""Tiny random-weight models in every foreign format, written to disk: for tests and benchmarks, offline.

Like diffusers' own tests: small configs, random weights, tokenizers built here from a small vocabulary, then
``save_pretrained``. Nothing is downloaded. ``scale`` widens the networks and ``sample_rate`` sets the clip
rate, so benchmarks can build heavier versions of the same shapes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

WORDS = ("kick", "drum", "snare", "hat", "clap", "punchy", "808", "tom", "crash", "open", "closed", "deep")


def _t5_tokenizer(max_length: int = 16) -> Any:
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0 - i) for i, w in enumerate(WORDS)]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def _bpe_vocab(specials: list[str]) -> dict[str, int]:
    letters = sorted({c for w in WORDS for c in w} | {"\u0120"})
    return {tok: i for i, tok in enumerate([*specials, *letters, *("\u0120" + w for w in WORDS)])}


def _roberta_tokenizer() -> Any:
    from transformers import RobertaTokenizer

    vocab = _bpe_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=16)


def _gemma_tokenizer() -> Any:
    from transformers import GemmaTokenizer

    vocab = _bpe_vocab(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"])
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=16)


def make_stable_audio(out: str | os.PathLike[str], sample_rate: int = 512, seconds: float = 4.0, scale: int = 1,
                      seed: int = 0) -> Path:
    """A tiny ``StableAudioPipeline`` (stereo Oobleck VAE with hop 8, 2-layer DiT) saved to ``out``."""
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    tok = _t5_tokenizer()
    torch.manual_seed(seed)
    text = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=8, d_ff=16, d_kv=4, num_heads=2, num_layers=1))
    hop = 8
    transformer = StableAudioDiTModel(
        sample_size=int(seconds * sample_rate / hop), in_channels=3, num_layers=2, attention_head_dim=4,
        num_key_value_attention_heads=2, out_channels=3, cross_attention_dim=4, time_proj_dim=8,
        global_states_input_dim=8, cross_attention_input_dim=4)
    scheduler = CosineDPMSolverMultistepScheduler(solver_order=2, prediction_type="v_prediction", sigma_data=1.0,
                                                  sigma_schedule="exponential")
    vae = AutoencoderOobleck(encoder_hidden_size=6 * scale, downsampling_ratios=[2, 4], decoder_channels=3 * scale,
                             decoder_input_channels=3, audio_channels=2, channel_multiples=[2, 4],
                             sampling_rate=sample_rate)
    projection = StableAudioProjectionModel(text_encoder_dim=8, conditioning_dim=4, min_value=0, max_value=512)
    pipe: Any = StableAudioPipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text,
                               tokenizer=tok, projection_model=projection)
    pipe.save_pretrained(str(out))
    return Path(out)


def make_stable_audio_3(out: str | os.PathLike[str], sample_rate: int = 64, seed: int = 0,
                        stochastic: bool = True) -> Path:
    """A tiny ``StableAudio3Pipeline`` (T5Gemma text encoder, SAME VAE, flow DiT) saved to ``out``."""
    from diffusers import (
        AutoencoderSAME,
        FlowMatchEulerDiscreteScheduler,
        StableAudio3DiTModel,
        StableAudio3Pipeline,
    )
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder
    from transformers import T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    cond = 16
    tok = _gemma_tokenizer()
    torch.manual_seed(seed)
    transformer = StableAudio3DiTModel(
        io_channels=8, patch_size=1, embed_dim=32, depth=2, num_heads=4, cond_token_dim=cond, global_cond_dim=cond,
        local_add_cond_dim=9, timestep_features_dim=16, ff_mult=2, num_memory_tokens=3,
        use_differential_attention=False)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1, shift=1.0, stochastic_sampling=stochastic)
    vae = AutoencoderSAME(audio_channels=2, patch_size=2, encoder_channels=8, encoder_c_mults=(2,),
                          encoder_strides=(2,), encoder_transformer_depths=(1,), latent_dim=8,
                          use_differential_attention=False, dim_heads=4, ff_mult=2, sampling_rate=sample_rate)
    module = T5GemmaModuleConfig(vocab_size=len(tok), hidden_size=cond, intermediate_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
                                 sliding_window=64, layer_types=["full_attention", "full_attention"])
    text = T5GemmaEncoderModel(T5GemmaConfig(encoder=module.to_dict(), decoder=module.to_dict(),
                                             is_encoder_decoder=False))
    durations = StableAudio3DurationEmbedder(output_dim=cond, fourier_dim=16)
    pipe: Any = StableAudio3Pipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text,
                                tokenizer=tok, duration_embedder=durations)
    pipe.save_pretrained(str(out))
    return Path(out)


def make_audioldm2(out: str | os.PathLike[str], sample_rate: int = 256, seed: int = 0) -> Path:
    """A tiny ``AudioLDM2Pipeline`` (CLAP + T5 + GPT2 conditioning, mel VAE, HiFi-GAN) saved to ``out``."""
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DDIMScheduler,
    )
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        GPT2Config,
        GPT2LMHeadModel,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
    )

    tok, tok2 = _roberta_tokenizer(), _t5_tokenizer()
    torch.manual_seed(seed)
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=(8, 16))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False)
    vae = AutoencoderKL(block_out_channels=[8, 16], in_channels=1, out_channels=1, norm_num_groups=8,
                        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4)
    text_cfg = {"bos_token_id": 0, "eos_token_id": 2, "hidden_size": 8, "intermediate_size": 37,
                "layer_norm_eps": 1e-05, "num_attention_heads": 1, "num_hidden_layers": 1, "pad_token_id": 1,
                "vocab_size": len(tok), "projection_dim": 8}
    audio_cfg = {"spec_size": 8, "window_size": 4, "num_mel_bins": 8, "intermediate_size": 37,
                 "layer_norm_eps": 1e-05, "depths": [1, 1], "num_attention_heads": [1, 1], "num_hidden_layers": 1,
                 "hidden_size": 192, "projection_dim": 8, "patch_size": 2, "patch_stride": 2,
                 "patch_embed_input_channels": 4}
    clap = ClapModel(ClapConfig(text_config=text_cfg, audio_config=audio_cfg, projection_dim=16))
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok2), d_model=32, d_ff=37, d_kv=8, num_heads=1, num_layers=1))
    gpt = GPT2LMHeadModel(GPT2Config(n_embd=16, n_head=1, n_layer=1, vocab_size=100, n_positions=99,
                                      bos_token_id=0, eos_token_id=0))
    gpt.config.max_new_tokens = 8
    projection = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=8, sampling_rate=sample_rate, upsample_initial_channel=16, upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4], resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]],
        normalize_before=False))
    pipe: Any = AudioLDM2Pipeline(vae=vae, text_encoder=clap, text_encoder_2=t5, projection_model=projection,
                             language_model=gpt, tokenizer=tok, tokenizer_2=tok2,
                             feature_extractor=ClapFeatureExtractor(), unet=unet, scheduler=scheduler,
                             vocoder=vocoder)
    pipe.save_pretrained(str(out))
    return Path(out)


TINY_ADP_UNET: dict[str, Any] = {
    "in_channels": 2, "channels": [8, 8, 16], "factors": [1, 4, 4], "items": [1, 1, 1], "attentions": [0, 0, 1],
    "attention_heads": 2, "attention_features": 8,
}


def make_adp_checkpoint(out: str | os.PathLike[str], unet: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A Lightning-style ``.ckpt`` (``state_dict`` with ``model.*`` and ``model_ema.ema_model.*`` keys, plain
    containers only) of an audio-diffusion-pytorch ``DiffusionModel``; ``unet`` None = a tiny one, written
    beside it as ``<stem>.json``."""
    import json

    from sampleforge.backends.adp import build_model

    cfg = unet or TINY_ADP_UNET
    model = build_model(cfg, seed=seed)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state |= {f"model_ema.ema_model.{k}": v.clone() for k, v in model.state_dict().items()}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "global_step": 10, "state_dict": state, "hyper_parameters": {"lr": 1e-4}}, path)
    if unet is None:
        path.with_suffix(".json").write_text(json.dumps(cfg))
    return path
