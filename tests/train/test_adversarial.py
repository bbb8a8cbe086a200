"""The multi-resolution spectrogram discriminator of vocoder training: its losses, that it learns to tell two
kinds of sound apart, that it pulls a generator toward the real kind, and that its state round-trips."""

from __future__ import annotations

import math

import pytest
import torch

from sampleforge.errors import CheckpointError
from sampleforge.strict import ConfigError
from sampleforge.train.adversarial import (
    Adversary,
    MultiResolutionDiscriminator,
    discriminator_hinge,
    feature_matching,
    generator_hinge,
)

N = 4096


def tones(batch: int, seed: int) -> torch.Tensor:
    """Decaying sines at random pitches: the "real" sound of these tests."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(N) / 44100
    freq = 200 + 2000 * torch.rand(batch, 1, generator=g)
    return 0.5 * torch.sin(2 * math.pi * freq * t) * torch.exp(-t / 0.03)


def test_hinge_losses_are_zero_only_past_the_margins() -> None:
    sure_real, sure_fake = [torch.full((2, 1, 5), 1.5)], [torch.full((2, 1, 5), -1.2)]
    assert float(discriminator_hinge(sure_real, sure_fake)) == 0.0
    assert float(discriminator_hinge(sure_fake, sure_real)) == pytest.approx(2.5 + 2.2)
    assert float(generator_hinge(sure_real)) == 0.0
    assert float(generator_hinge(sure_fake)) == pytest.approx(2.2)
    a = [[torch.ones(2, 3, 4), torch.zeros(2, 3, 4)]]
    b = [[torch.ones(2, 3, 4), torch.full((2, 3, 4), 0.5)]]
    assert float(feature_matching(a, b)) == pytest.approx(0.25)  # the mean of 0 and 0.5 over the two layers


def test_one_score_map_and_feature_maps_per_resolution() -> None:
    d = MultiResolutionDiscriminator(ffts=(256, 1024), channels=8)
    outs = d(torch.randn(3, N))
    assert len(outs) == 2
    for (scores, features), n_fft in zip(outs, (256, 1024), strict=True):
        frames = N // (n_fft // 4) + 1
        assert scores.shape == (3, 1, frames)
        assert len(features) == 4 and all(f.shape == (3, 8, frames) for f in features)


def test_the_discriminator_learns_to_tell_noise_from_tones() -> None:
    torch.manual_seed(0)
    adversary = Adversary(lr=2e-3, ffts=(256, 512), channels=16)
    noise = 0.1 * torch.randn(8, N, generator=torch.Generator().manual_seed(1))
    first = float(adversary.update(tones(8, 0), noise))
    for step in range(30):
        last = float(adversary.update(tones(8, step), noise))
    assert last < 0.5 * first, (first, last)  # measured 2.0 -> 0.0 (0.44 with the log-magnitudes fed raw)
    adv_noise, _ = adversary.generator_terms(tones(8, 99), noise)
    adv_tone, _ = adversary.generator_terms(tones(8, 99), tones(8, 98))
    assert float(adv_noise) > float(adv_tone)


def test_its_gradient_pulls_a_generator_toward_the_real_sound() -> None:
    """A 'generator' that is a tone plus noise at a learned gain, trained by the adversarial and feature-matching
    terms alone against a discriminator trained alongside it, turns the noise down (measured 0.5 -> 0.10)."""
    torch.manual_seed(0)
    adversary = Adversary(lr=2e-3, ffts=(256, 512), channels=16)
    noise = torch.randn(8, N, generator=torch.Generator().manual_seed(1))
    noise_gain = torch.tensor(0.0, requires_grad=True)  # sigmoid(0) = 0.5: half noise to start
    opt = torch.optim.Adam([noise_gain], lr=0.05)
    for step in range(40):
        real = tones(8, step)
        fake = real + torch.sigmoid(noise_gain) * 0.1 * noise
        adversary.update(real, fake)
        adv, fm = adversary.generator_terms(real, fake)
        opt.zero_grad()
        (adv + fm).backward()
        opt.step()
        assert all(p.grad is None for p in adversary.model.parameters())  # the generator's step spares them
    assert float(torch.sigmoid(noise_gain.detach())) < 0.3, float(noise_gain.detach())


def test_state_round_trips_and_a_mismatch_is_named() -> None:
    a = Adversary(ffts=(256,), channels=8)
    a.update(tones(4, 0), torch.randn(4, N))
    tensors, meta = a.state()
    b = Adversary(ffts=(256,), channels=8)
    b.load_state(tensors, meta, "ckpt")
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    sa, sb = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    with pytest.raises(CheckpointError, match="ckpt: the discriminator does not fit"):
        Adversary(ffts=(256,), channels=16).load_state(tensors, meta, "ckpt")


def test_a_restored_discriminator_moves_with_its_optimizer_state() -> None:
    """Resuming loads the optimizer state on the CPU before the first step moves the discriminator to the batch's
    device: the state must follow it (the "meta" device stands in for a GPU here), or AdamW's step mixes devices."""
    a = Adversary(ffts=(256,), channels=8)
    a.update(tones(4, 0), torch.randn(4, N))
    b = Adversary(ffts=(256,), channels=8)
    b.load_state(*a.state(), "ckpt")
    b.to("meta")
    assert {p.device.type for p in b.model.parameters()} == {"meta"}
    state = b.opt.state_dict()["state"]
    assert state and {v.device.type for s in state.values() for k, v in s.items() if k != "step"} == {"meta"}
    assert {id(p) for p in b.opt.param_groups[0]["params"]} == {id(p) for p in b.model.parameters()}
    assert b.opt.param_groups[0]["lr"] == a.opt.param_groups[0]["lr"] and b.opt.param_groups[0]["betas"] == (0.8, 0.99)


@pytest.mark.parametrize("key, value", [("vocoder_mr_mel_weight", -1.0), ("vocoder_adversarial_weight", -0.1), ("vocoder_feature_matching_weight", -1),
                                        ("vocoder_discriminator_lr", 0.0), ("vocoder_discriminator_ffts", [500]),
                                        ("vocoder_discriminator_ffts", [])])
def test_recipe_refuses_bad_settings(key: str, value: object) -> None:
    from sampleforge.train.recipe import RecipeConfig

    with pytest.raises(ConfigError, match=f"recipe.{key}"):
        RecipeConfig(**{key: value})


def test_vocoder_crops_lie_in_the_sound() -> None:
    """Training crops of padded one-shots: half the batches at the onset, the others each at its own start, every
    crop holding sound (a crop of the clips' silent padding teaches neither the vocoder nor its discriminator)."""
    from sampleforge.train.vocoder import random_crop

    hop, seg, frames = 512, 16, 173
    wav = torch.zeros(8, (frames - 1) * hop)
    lengths = [5, 10, 20, 40, 60, 80, 120, 171]  # the sound's length in hops, one clip each
    for i, n in enumerate(lengths):
        wav[i, : n * hop] = torch.randn(n * hop, generator=torch.Generator().manual_seed(i))
    g = torch.Generator().manual_seed(0)
    at_onset = anywhere = 0
    long_clip: list[torch.Tensor] = []
    for _ in range(40):
        crops = random_crop(wav, hop, seg, g)
        assert crops.shape == (8, (seg - 1) * hop)
        if torch.equal(crops, wav[:, : (seg - 1) * hop]):
            at_onset += 1
            continue
        anywhere += 1
        for i, n in enumerate(lengths):
            sounding = int(crops[i].reshape(-1, hop).abs().sum(dim=1).gt(0).sum())
            assert sounding >= min(n, seg // 4), (n, sounding)
        long_clip.append(crops[-1])
    assert at_onset > 5 and anywhere > 5
    distinct = {tuple(c[:4].tolist()) for c in long_clip}
    assert len(distinct) > 5  # the long clip's crops start all over it
    assert torch.equal(random_crop(wav, hop, 0, g), wav) and torch.equal(random_crop(wav, hop, frames, g), wav)
    assert torch.equal(random_crop(wav, hop, seg, g, onset_only=True), wav[:, : (seg - 1) * hop])
