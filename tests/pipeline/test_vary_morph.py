"""Audio-to-audio on the debug model: vary (strength 0 = VAE round trip, distance grows with strength,
1 ignores the input) and morph (endpoints equal the sources; noise slerped, condition and latents lerped)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from sampleforge.audio.finish import finish
from sampleforge.errors import UserInputError
from sampleforge.params import DEFAULTS
from sampleforge.pipeline import Generator, MorphEnd, slerp

FIT = DEFAULTS.fit_steps  # vary and morph fit a clip's latent to its sound


@pytest.fixture(scope="module")
def gen(debug_model: Path) -> Generator:
    return Generator.from_pretrained(debug_model, device="cpu")


@pytest.fixture(scope="module")
def source(gen: Generator) -> np.ndarray:
    return gen.generate("kick", steps=4, seed=5).numpy()[0]


def test_strength_zero_is_the_vae_round_trip(gen: Generator, source: np.ndarray) -> None:
    z = gen.encode([source], fit_steps=FIT)
    out = gen.vary(source, prompt="snare", count=2, strength=0.0, steps=8, seed=1)
    torch.testing.assert_close(out.latents, z.expand(2, -1, -1), rtol=0, atol=1e-6)  # no step was run
    frames = out.mels.shape[-1]
    p = gen.settings(None, {"prompt": "snare", "seed": 1})
    round_trip = gen.render(p, *gen.condition(["snare"]), torch.zeros(1, *z.shape[1:]), [1], init=z,
                            strength=0.0)[0]
    torch.testing.assert_close(out.audio[0], round_trip[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.mels[0], gen.decode(z, frames)[0], rtol=0, atol=1e-5)


def test_fitting_brings_the_latent_s_sound_closer_to_the_clip(gen: Generator, source: np.ndarray) -> None:
    """The encoder's mean, then fit_steps of Adam on the latent: its decoded mel comes closer to the clip's."""
    samples, frames = gen.frames(gen.bundle.config.duration)
    mel = gen.mel(torch.from_numpy(finish(source, gen.sample_rate, normalize="peak", length=samples)[None]))
    mel = mel[..., :frames]
    err = [float((gen.decode(gen.encode([source], fit_steps=n), frames) - mel).abs().mean()) for n in (0, 10, 40)]
    assert err[0] > err[1] > err[2], err
    torch.testing.assert_close(gen.encode([source], fit_steps=0), gen.bundle.vae.encode(mel).float())  # the mean
    assert not any(p.requires_grad for p in gen.bundle.vae.parameters())  # the weights stay as they were
    v0 = gen.vary(source, strength=0.0, steps=2, seed=1, fit_steps=0).latents
    torch.testing.assert_close(v0[0], gen.encode([source], fit_steps=0)[0], rtol=0, atol=1e-6)


def test_distance_to_the_input_grows_with_strength(gen: Generator, source: np.ndarray) -> None:
    z = gen.encode([source], fit_steps=FIT)
    dist = []
    for s in (0.0, 0.2, 0.5, 0.9):
        out = gen.vary(source, prompt="kick", count=4, strength=s, steps=10, seed=11)
        dist.append(float((out.latents - z).flatten(1).norm(dim=1).mean()))
    assert dist[0] < 1e-5
    assert all(a < b for a, b in zip(dist, dist[1:], strict=False)), dist


def test_strength_one_ignores_the_input(gen: Generator, source: np.ndarray) -> None:
    other = np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.3
    a = gen.vary(source, prompt="snare", strength=1.0, steps=5, seed=4).audio
    b = gen.vary(other, prompt="snare", strength=1.0, steps=5, seed=4).audio
    c = gen.generate("snare", steps=5, seed=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=1e-4)


def test_morph_endpoints_equal_the_sources(gen: Generator) -> None:
    m = gen.morph(MorphEnd("kick", 3), MorphEnd("snare", 9), morph_steps=5, steps=4)
    assert m.audio.shape == (5, 88200) and m.seeds == [3, 3, 3, 3, 9]
    a = gen.generate("kick", steps=4, seed=3)
    b = gen.generate("snare", steps=4, seed=9)
    torch.testing.assert_close(m.audio[0], a[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(m.audio[-1], b[0], rtol=0, atol=1e-4)
    assert not torch.allclose(m.audio[2], a[0], atol=1e-2) and not torch.allclose(m.audio[2], b[0], atol=1e-2)


def test_clip_morph_endpoints_are_the_clips_variations(gen: Generator, source: np.ndarray) -> None:
    other = gen.generate("snare", steps=4, seed=8).numpy()[0]
    m = gen.morph(MorphEnd("kick", 1, source), MorphEnd("snare", 2, other), morph_steps=3, strength=0.0, steps=4)
    za, zb = gen.encode([source, other], fit_steps=FIT)
    torch.testing.assert_close(m.latents[0], za, rtol=0, atol=1e-5)
    torch.testing.assert_close(m.latents[2], zb, rtol=0, atol=1e-5)
    torch.testing.assert_close(m.latents[1], (za + zb) / 2, rtol=0, atol=1e-5)  # linear in the latent
    v = gen.vary(source, prompt="kick", strength=0.4, steps=5, seed=1).audio
    m2 = gen.morph(MorphEnd("kick", 1, source), MorphEnd("snare", 2, other), morph_steps=2, strength=0.4, steps=5)
    torch.testing.assert_close(m2.audio[0], v[0], rtol=0, atol=1e-4)


def test_slerp_keeps_the_norm_and_the_ends() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 8, 11, generator=g), torch.randn(4, 8, 11, generator=g)
    torch.testing.assert_close(slerp(a, b, 0.0), a, rtol=0, atol=0)
    torch.testing.assert_close(slerp(a, b, 1.0), b, rtol=0, atol=0)
    mid = slerp(a, b, 0.5)
    assert abs(float(mid.norm()) - float((a.norm() + b.norm()) / 2)) < 0.05 * float(a.norm())
    assert float(torch.lerp(a, b, 0.5).norm()) < 0.8 * float(mid.norm())  # a linear mix loses energy


@pytest.mark.parametrize("kwargs, field", [({"strength": -0.1}, "strength"), ({"strength": 2}, "strength"),
                                           ({"count": 0}, "count"), ({"audio": np.zeros((2, 5))}, "input audio"),
                                           ({"audio": np.array([np.nan] * 10)}, "input audio")])
def test_vary_bad_values(gen: Generator, source: np.ndarray, kwargs: dict, field: str) -> None:
    args = {"audio": source, "strength": 0.5, "steps": 2, **kwargs}
    audio = args.pop("audio")
    with pytest.raises(UserInputError, match=field):
        gen.vary(audio, **args)


def test_morph_bad_values(gen: Generator, source: np.ndarray) -> None:
    with pytest.raises(UserInputError, match="both ends"):
        gen.morph(MorphEnd("kick", 1, source), MorphEnd("snare", 2), steps=2)
    with pytest.raises(UserInputError, match="morph_steps"):
        gen.morph(MorphEnd("kick", 1), MorphEnd("snare", 2), morph_steps=1, steps=2)
    with pytest.raises(UserInputError, match="seed"):
        gen.morph(MorphEnd("kick", -1), MorphEnd("snare", 2), steps=2)


def test_an_input_longer_than_the_model_hears_is_said(gen: Generator, source: np.ndarray) -> None:
    sr, duration = gen.sample_rate, gen.bundle.config.duration
    loop = np.tile(source[: int(0.5 * sr)], int(2 * duration + 2))  # sounds for twice the duration and more
    short = gen.vary(source, prompt="kick", strength=0.5, steps=2, seed=1).warnings
    long = gen.vary(loop, prompt="kick", strength=0.5, steps=2, seed=1).warnings
    assert not any("sounds for" in w for w in short)
    (said,) = [w for w in long if "sounds for" in w]
    assert said.startswith("the input sounds for") and f"its first {duration:g} s" in said
    quiet_tail = np.concatenate([source, np.zeros(10 * sr, np.float32)])  # a long file of a short sound
    assert not gen.cut_warnings([quiet_tail], duration)
    ends = gen.morph(MorphEnd("kick", audio=loop), MorphEnd("kick", audio=source), morph_steps=2, steps=2).warnings
    assert [w for w in ends if "sounds for" in w][0].startswith("the first clip sounds for")


def test_a_clip_without_a_prompt_is_not_said_to_make_a_random_drum(gen: Generator, source: np.ndarray) -> None:
    """Varying or morphing clips needs no prompt: only a prompt that is given (or an end without a clip) is
    checked for keywords."""
    random_drum = "no keyword this model knows"
    assert not any(random_drum in w for w in gen.vary(source, steps=2, seed=1).warnings)
    assert any(random_drum in w for w in gen.vary(source, prompt="zzz", steps=2, seed=1).warnings)
    clips = gen.morph(MorphEnd(audio=source), MorphEnd(audio=source[::-1].copy()), steps=2, morph_steps=2)
    assert not any(random_drum in w for w in clips.warnings)
    prompts = gen.morph(MorphEnd("kick"), MorphEnd(), steps=2, morph_steps=2)  # an end from no words at all
    assert any(random_drum in w for w in prompts.warnings)


def test_a_morph_between_two_guidance_scales_claims_no_one_scale(knob_model: Path,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """Ends guided at 4.5 ("kick", no knob) and 3 ("long kick"): the result's params say no scale for every clip
    (they said 4.5), its cfg_scales each clip's; ends that share one say it."""
    from tests.model_folders import edited_copy

    firm = edited_copy(knob_model, tmp_path_factory.mktemp("models") / "firm",
                       lambda c: c["diffusion"].update(cfg_scale_no_knobs=4.5))
    gen = Generator.from_pretrained(firm, device="cpu")
    mixed = gen.morph(MorphEnd("kick", 1), MorphEnd("long kick", 2), steps=1, morph_steps=3, vocoder=False)
    assert mixed.params.cfg_scale is None and mixed.cfg_scales == [4.5, 3.75, 3.0]
    same = gen.morph(MorphEnd("kick", 1), MorphEnd("snare", 2), steps=1, morph_steps=3, vocoder=False)
    assert same.params.cfg_scale == 4.5 and same.cfg_scales is None


def test_a_sampler_the_model_lacks_is_refused_before_sampling(gen: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    """'native' (diffusers pipelines' own scheduler) and a flow sampler on a DDPM model: a ParamError naming the
    sampler and listing the model's, before anything is rendered ('native' failed inside the sampler, unnamed)."""
    from sampleforge.errors import ParamError

    monkeypatch.setattr(Generator, "render", lambda *a, **k: pytest.fail("sampled before refusing"))
    own = ", ".join(gen.samplers)
    for sampler, needle in (("native", f"sampler: 'native' is for other people's models (diffusers pipelines); "
                                       f"this model's samplers: {own}"),
                            ("flow_euler", "sampler 'flow_euler' does not fit a"),
                            ("pingpong", "sampler: 'pingpong' is for distilled flow models")):
        with pytest.raises(ParamError, match="^" + re.escape(needle)) as caught:
            gen.generate("kick", steps=1, seed=0, sampler=sampler)
        assert caught.value.name == "sampler"
        with pytest.raises(ParamError, match="^" + re.escape(needle)):
            gen.vary(np.ones(100, np.float32), steps=1, seed=0, sampler=sampler)


def test_vary_morph_and_encode_take_a_file_path(gen: Generator, source: np.ndarray, tmp_path: Path) -> None:
    """A path is read at the model's rate, as workflow.morph reads MorphEnd.audio (it failed converting the
    path's text to a number)."""
    import soundfile as sf

    from sampleforge.audio.io import read_audio

    path = tmp_path / "source.wav"
    sf.write(path, source, gen.sample_rate, subtype="FLOAT")
    clip = read_audio(path, gen.sample_rate)
    torch.testing.assert_close(gen.encode([path]), gen.encode([clip]), rtol=0, atol=0)
    by_path = gen.vary(str(path), prompt="kick", steps=2, seed=1).audio
    torch.testing.assert_close(by_path, gen.vary(clip, prompt="kick", steps=2, seed=1).audio, rtol=0, atol=0)
    ends = gen.morph(MorphEnd("kick", 1, path), MorphEnd("snare", 2, str(path)), steps=2, morph_steps=2).audio
    want = gen.morph(MorphEnd("kick", 1, clip), MorphEnd("snare", 2, clip), steps=2, morph_steps=2).audio
    torch.testing.assert_close(ends, want, rtol=0, atol=0)
    with pytest.raises(UserInputError, match=r"^input audio: a mono clip \(T,\) of samples or a file path, got dict"):
        gen.vary({"samples": [0.1]}, steps=1)


def test_morph_ends_are_checked_and_numpy_seeds_taken(gen: Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    m = gen.morph(MorphEnd("kick", np.int64(3)), MorphEnd("snare", np.int32(9)), steps=1, morph_steps=3)
    assert m.seeds == [3, 3, 9] and all(type(s) is int for s in m.seeds)
    monkeypatch.setattr(Generator, "render", lambda *a, **k: pytest.fail("rendered before refusing"))
    for a, b, needle in ((MorphEnd(None, 1), MorphEnd("snare"), "a.prompt must be a text"),
                         (MorphEnd("kick"), "snare", "b: a MorphEnd (MorphEnd('kick', 1)), got str 'snare'"),
                         (MorphEnd("kick"), MorphEnd("snare", 2**31), "b.seed must be an integer between 0 and")):
        with pytest.raises(UserInputError, match="^" + re.escape(needle)):
            gen.morph(a, b, steps=1)  # type: ignore[arg-type]


def test_a_clip_that_rings_past_its_end_is_said_by_prompt() -> None:
    from sampleforge.backends.base import issue_warnings
    from sampleforge.errors import GenerationWarning
    from sampleforge.pipeline import ringing_warnings

    sr = 44100
    t = torch.arange(2 * sr) / sr
    ring = torch.sin(2 * torch.pi * 440 * t) * torch.exp(-t / 0.5)  # about -35 dB re its peak at 2 s
    short = torch.sin(2 * torch.pi * 440 * t) * torch.exp(-t / 0.02)
    raw = torch.stack([ring, short, ring, short])
    said = ringing_warnings(raw, ["crash", "crash", "ride", "kick"], 2.0, sr)
    assert len(said) == 2 and said[0].startswith("'crash' still rings where its 2-s clip ends (1 of 2 clips, -3")
    assert said[1].startswith("'ride' still rings where its 2-s clip ends (-3")
    assert ringing_warnings(raw[1:2], ["kick"], 2.0, sr) == [] and ringing_warnings(torch.zeros(0), [], 2.0, sr) == []
    with pytest.warns(GenerationWarning, match="'crash' still rings"):  # the API says it
        issue_warnings(said)
