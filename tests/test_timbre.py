"""Timbre knobs: the features move the right way on synthetic sounds, quantiles are per class, words map to
knobs, the encoder's knob path keeps the null condition, and a knob-conditioned debug model generates."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from sampleforge.errors import UserInputError
from sampleforge.models.text import KeywordEncoder, TextConfig
from sampleforge.pipeline import Generator
from sampleforge.strict import ConfigError
from sampleforge.timbre import (
    KNOBS,
    WORD_KNOB_MIN_CLIPS,
    WORD_KNOBS,
    class_quantiles,
    class_word_knobs,
    knob_vector,
    knobs_from_words,
    measure,
)

SR = 44100


def tone(freq: float, decay_s: float, seconds: float = 2.0, click: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    wav = np.sin(2 * np.pi * freq * t) * np.exp(-t / decay_s)
    if click:
        wav[: int(0.005 * SR)] += click * np.random.default_rng(0).standard_normal(int(0.005 * SR))
    return (0.9 * wav / np.abs(wav).max()).astype(np.float32)


def test_decay_follows_the_envelope() -> None:
    short, long = measure(tone(100, 0.05)), measure(tone(100, 0.4))
    # -30 dB of an exp(-t/tau) envelope is reached after tau * ln(10**1.5) = 3.45 tau
    assert short["decay"] == pytest.approx(0.05 * 3.45, rel=0.15)
    assert long["decay"] == pytest.approx(0.4 * 3.45, rel=0.15)


def test_brightness_and_weight_follow_the_spectrum() -> None:
    low, high = measure(tone(60, 0.3)), measure(tone(3000, 0.3))  # version 1 (drums-v2's)
    assert low["brightness"] < 200 < 2000 < high["brightness"]
    assert low["weight"] > 0.9 and high["weight"] < 0.05  # the share of energy below 120 Hz


def test_version_2_weight_is_the_pitch_of_the_body() -> None:
    low, mid, high = (measure(tone(f, 0.3), features=2) for f in (60, 150, 3000))
    assert low["brightness"] < 200 < 2000 < high["brightness"]
    # weight: octaves from 250 Hz down to the body's pitch; a tone with no body (a hat) weighs nothing
    assert low["weight"] == pytest.approx(math.log2(250 / 60), abs=0.05)
    assert mid["weight"] == pytest.approx(math.log2(250 / 150), abs=0.05)
    assert high["weight"] == 0.0


def test_brightness_counts_the_click_of_a_kick() -> None:
    """Version 2's magnitude centroid hears a click over the same 50-Hz body; version 1's power centroid does not."""
    body = tone(50, 0.3)
    clicked = body.copy()
    rng = np.random.default_rng(0)
    clicked[: SR // 200] += 0.05 * rng.standard_normal(SR // 200).astype(np.float32)
    assert measure(clicked, features=2)["brightness"] > 1.5 * measure(body, features=2)["brightness"]
    assert measure(clicked)["brightness"] < 1.01 * measure(body)["brightness"]  # version 1: the fundamental
    with pytest.raises(ValueError, match="version"):
        measure(body, features=3)


def test_punch_is_the_attack_against_the_body() -> None:
    plain, clicked = measure(tone(100, 0.3)), measure(tone(100, 0.3, click=3.0))
    assert clicked["punch"] > plain["punch"] + 3


def test_measure_survives_silence_and_tiny_clips() -> None:
    for wav in (np.zeros(SR, np.float32), np.ones(10, np.float32)):
        for version in (1, 2):
            feats = measure(wav, features=version)
            assert set(feats) == set(KNOBS) and all(math.isfinite(v) for v in feats.values())


def test_quantiles_are_within_each_class() -> None:
    feats = [{"decay": d, "brightness": 1.0, "weight": 0.0, "punch": 0.0} for d in (0.1, 0.2, 0.3, 5.0, 6.0)]
    cats = ["kick", "kick", "kick", "crash", "crash"]
    q = class_quantiles(feats, cats)
    d = KNOBS.index("decay")
    assert q[:3, d].tolist() == [0.0, 0.5, 1.0]  # the longest kick is 1 although crashes are far longer
    assert q[3:, d].tolist() == [0.0, 1.0]
    assert q[:, KNOBS.index("brightness")].tolist() == [0.5] * 5  # ties share their mean rank


def test_class_words_are_measured_medians_of_the_clips_that_carry_them() -> None:
    n = WORD_KNOB_MIN_CLIPS
    cats = ["kick"] * (2 * n + 1) + ["tom"] * 2
    words = [("kick", "808")] * n + [("kick", "acoustic")] * n + [("kick",)] + [("tom", "808")] * 2
    q = np.full((len(cats), len(KNOBS)), 0.5, dtype=np.float32)
    w, p = KNOBS.index("weight"), KNOBS.index("punch")
    q[:n, w] = 0.9  # heavy 808 kicks
    q[n : 2 * n, w] = 0.2 + np.arange(n) * 0.01  # light acoustic kicks
    q[n : 2 * n, p] = 0.6  # ... that lean too little on punch to count
    table = class_word_knobs(q, cats, words)
    assert table["kick"]["808"] == {"weight": 0.9}
    assert table["kick"]["acoustic"] == {"weight": round(float(np.median(q[n : 2 * n, w])), 2)}
    assert "kick" not in table["kick"]  # the class word is not a word of its own class
    assert "tom" not in table  # 808 toms: too few clips


def test_words_set_knobs_explicit_values_win() -> None:
    assert knobs_from_words(["long", "kick"]) == WORD_KNOBS["long"]
    assert knobs_from_words(["long"], {"decay": 0.3})["decay"] == 0.3
    assert knobs_from_words(["kick"], {"decay": None}) == {}
    # a word that means something specific for one class, as the model measured it
    table = {"kick": {"808": {"weight": 0.9, "decay": 0.7}}}
    assert knobs_from_words(["808", "kick"], category="kick", class_words=table) == table["kick"]["808"]
    assert knobs_from_words(["808", "snare"], category="snare", class_words=table) == {}
    assert knobs_from_words(["808", "kick"], category="kick") == {}  # a model without the table
    assert knobs_from_words(["long", "808"], category="kick", class_words=table)["decay"] == WORD_KNOBS["long"]["decay"]
    assert knobs_from_words(["bright", "808"], category="kick", class_words={"kick": {"bright": {"brightness": 0.6}}},
                            )["brightness"] == 0.6  # the class's own meaning wins over the general table
    # a model's limits hold what a word asks for within the range where the class stays itself
    limits = {"snare": {"brightness": [0.1, 0.7]}, "kick": {"weight": [0.3, 0.9]}}
    assert knobs_from_words(["bright", "snare"], category="snare", limits=limits) == {"brightness": 0.7}
    assert knobs_from_words(["muffled", "snare"], category="snare", limits=limits) == {"brightness": 0.1}
    assert knobs_from_words(["dark", "snare"], category="snare", limits=limits) == {"brightness": 0.15}  # within
    assert knobs_from_words(["bright", "snare"], {"brightness": 0.95}, "snare", limits=limits) == {"brightness": 0.95}
    assert knobs_from_words(["bright", "kick"], category="kick", limits=limits) == WORD_KNOBS["bright"]
    assert knobs_from_words(["bright"], limits=limits) == WORD_KNOBS["bright"]  # no class: no limit
    assert knobs_from_words(["808", "kick"], category="kick", class_words=table, limits=limits) == {
        "weight": 0.9, "decay": 0.7}  # a class's own word is held too (here within)
    assert knobs_from_words(["thin", "kick"], category="kick", limits=limits) == {"weight": 0.3}
    # a word's reach moves its knobs, held within the limits, toward the middle together
    reach = {"tom": {"high": 0.5}}
    high = {"tom": {"high": {"decay": 0.2, "weight": 0.1}}}
    assert knobs_from_words(["high", "tom"], category="tom", class_words=high, reach=reach) == {
        "decay": 0.35, "weight": 0.3}
    assert knobs_from_words(["high", "tom"], category="tom", class_words=high, reach={"tom": {"high": 0.0}}) == {
        "decay": 0.5, "weight": 0.5}
    assert knobs_from_words(["high", "tom"], {"weight": 0.05}, "tom", high, reach=reach) == {
        "decay": 0.35, "weight": 0.05}  # an explicit value is the user's
    assert knobs_from_words(["short", "tom"], category="tom", reach=reach) == WORD_KNOBS["short"]  # other words
    assert knobs_from_words(["high", "tom"], category="tom", class_words=high, limits={"tom": {"decay": [0.4, 1]}},
                            reach=reach) == {"decay": 0.45, "weight": 0.3}  # held at 0.4, then half-way back
    v = knob_vector({"decay": 0.2})
    assert v[KNOBS.index("decay")] == 0.2 and all(math.isnan(x) for i, x in enumerate(v) if KNOBS[i] != "decay")


def test_every_mapped_word_names_a_knob_in_range() -> None:
    for word, values in WORD_KNOBS.items():
        assert values and all(k in KNOBS and 0 <= v <= 1 for k, v in values.items()), word


def _encoder() -> KeywordEncoder:
    torch.manual_seed(0)
    return KeywordEncoder(TextConfig(vocab_size=8, embed_dim=4, cond_dim=6, hidden_dim=8, knobs=list(KNOBS)))


def test_encoder_knobs_change_the_condition_and_unset_knobs_do_not() -> None:
    enc = _encoder()
    ids = torch.tensor([[1, 2, 0], [1, 2, 0], [1, 2, 0]])
    unset = torch.full((3, 4), float("nan"))
    knobs = unset.clone()
    knobs[1, 0], knobs[2, 0] = 0.1, 0.9
    with torch.no_grad():
        out = enc(ids, knobs)
        assert torch.allclose(out[0], enc(ids[:1]))  # all unset == no knobs at all
        assert not torch.allclose(out[1], out[2])
        empty = torch.zeros(2, 3, dtype=torch.long)
        assert torch.allclose(enc(empty, torch.full((2, 4), float("nan"))), enc.null(2))


def test_knob_dropout_unsets_knobs_and_whole_dropped_prompts() -> None:
    knobs = torch.rand(400, 4)
    ids = torch.ones(400, 3, dtype=torch.long)
    ids[:100] = 0  # prompts dropped entirely
    out = KeywordEncoder.knob_dropout(knobs, ids, 0.5, torch.Generator().manual_seed(0))
    assert torch.isnan(out[:100]).all()
    share = torch.isnan(out[100:]).float().mean().item()
    assert 0.4 < share < 0.6
    kept = ~torch.isnan(out)
    assert torch.equal(out[kept], knobs[kept])


def test_config_rejects_unknown_knobs() -> None:
    with pytest.raises(ConfigError, match="text.knobs"):
        TextConfig(knobs=["loudness"])
    with pytest.raises(ConfigError, match="text.knobs"):
        TextConfig(knobs=["decay", "decay"])
    assert TextConfig.from_dict({"knobs": ["decay"]}).knobs == ["decay"]


def test_encoder_rejects_a_wrong_knob_width() -> None:
    with pytest.raises(UserInputError, match="knobs must be"):
        _encoder()(torch.ones(1, 2, dtype=torch.long), torch.zeros(1, 3))


def test_generation_follows_knobs_and_words(knob_model) -> None:
    from sampleforge.pipeline import Generator

    gen = Generator.from_pretrained(knob_model, device="cpu")
    plain = gen.generate_full("kick", steps=2, seed=3, vocoder=False)
    unset = gen.generate_full("kick", decay=None, steps=2, seed=3, vocoder=False)
    assert torch.equal(plain.latents, unset.latents)
    cond = lambda prompt, knobs=None: gen.condition([prompt], knobs)[0]  # noqa: E731
    assert not torch.allclose(cond("kick", {"decay": 0.1}), cond("kick", {"decay": 0.9}))
    assert torch.equal(cond("kick"), cond("kick", {"decay": None}))
    # a word stands for its knob value: "long kick" == "long kick" with decay set as the table says
    assert torch.equal(cond("long kick"), cond("long kick", WORD_KNOBS["long"]))
    assert not torch.allclose(cond("long kick"), cond("long kick", {"decay": 0.1}))
    assert gen.knob_values("short punchy kick", {"brightness": 0.2}) == {
        "brightness": 0.2, **WORD_KNOBS["short"], **WORD_KNOBS["punchy"]}


def test_bad_knobs_are_refused_and_models_without_knobs_warn(knob_model, debug_model) -> None:
    from sampleforge.pipeline import Generator

    gen = Generator.from_pretrained(knob_model, device="cpu")
    with pytest.raises(UserInputError, match="unknown generation setting 'loudness'"):
        gen.generate_full("kick", steps=1, loudness=0.5)
    with pytest.raises(UserInputError, match="decay must be a finite number between 0 and 1, got 1.5"):
        gen.generate_full("kick", steps=1, decay=1.5)
    plain = Generator.from_pretrained(debug_model, device="cpu").generate_full("kick", steps=1, decay=0.5)
    assert any("no timbre knobs" in w for w in plain.warnings)
    stereo = Generator.from_pretrained(debug_model, device="cpu").generate_full("kick", steps=1, channels="stereo")
    assert any("makes mono clips: channels 'stereo' ignored" in w for w in stereo.warnings)
    assert stereo.audio.ndim == 2 and not any("channels" in w for w in plain.warnings)


def test_thin_knob_words_reach_the_model_through_their_knob_only(knob_model) -> None:
    from sampleforge.pipeline import Generator
    from sampleforge.timbre import KEYWORD_MIN_CLIPS

    gen = Generator.from_pretrained(knob_model, device="cpu")
    assert gen.bundle.vocab.counts["long"] < KEYWORD_MIN_CLIPS
    assert gen.model_words("long 808 kick") == "808 kick"  # "808" is no knob word: kept
    gen.bundle.vocab.counts["long"] = KEYWORD_MIN_CLIPS  # a well-supported word stays a keyword too
    assert gen.model_words("long 808 kick") == "long 808 kick"
    # a word the model measured for a class counts the clips of that class: 808 snares are few
    gen.bundle.timbre = {"words": {"snare": {"808": {"decay": 0.8}}, "kick": {"808": {"weight": 0.9}}}}
    gen.bundle.vocab.classes = {"808": {"kick": KEYWORD_MIN_CLIPS, "snare": 2}}
    assert gen.model_words("808 snare") == "snare"
    assert gen.model_words("808 kick") == "808 kick"
    assert gen.knob_values("808 snare") == {"decay": 0.8}
    assert gen.model_words("808") == "808"  # no class named: the word's total count decides


def test_a_saved_model_keeps_its_timbre_table(knob_model, tmp_path) -> None:
    from sampleforge.bundle import load_bundle, save_bundle

    bundle = load_bundle(knob_model)
    bundle.timbre = {"quantiles": [0.1, 0.5, 0.9], "classes": {}, "words": {"kick": {"808": {"weight": 0.9}}}}
    again = load_bundle(save_bundle(bundle, tmp_path / "copy"))
    assert again.class_words == {"kick": {"808": {"weight": 0.9}}}
    (tmp_path / "copy" / "timbre.json").write_text("[1, 2")
    with pytest.raises(Exception, match="timbre.json: invalid JSON"):
        load_bundle(tmp_path / "copy")


def test_a_hand_edited_table_is_refused_when_the_model_loads(knob_model, tmp_path, capsys) -> None:
    """A wrong entry of knob_limits, word_reach or pair_reach stops the model loading with the entry named (CLI:
    one line, exit 2), not deep in generation; a right one loads."""
    import json
    import shutil

    from sampleforge.bundle import load_bundle
    from sampleforge.cli import main

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    for tables, said in (({"pair_reach": {"kick": {"weight:low+decay:low": 0.5}}}, "pair_reach.kick.weight:low+decay:low"),
                         ({"pair_reach": {"kick": {"808+bright:high": 0.5}}}, "pair_reach.kick.808+bright:high"),
                         ({"pair_reach": {"kick": {"+decay:low": 0.5}}}, "pair_reach.kick.+decay:low"),
                         ({"pair_reach": {"kick": {"808+decay:up": 0.5}}}, "pair_reach.kick.808+decay:up"),
                         ({"pair_reach": {"kick": {"decay:low+decay:high+punch:low": 0.5}}}, "kick.decay:low+decay:high"),
                         ({"pair_reach": {"kick": {"decay:low+brightness:low+weight:low+punch:low": 0.5}}},
                          "neither a corner of two or three knobs"),
                         ({"word_reach": {"kick": {"808": "0.5"}}}, "word_reach.kick.808: expected a reach"),
                         ({"knob_limits": {"kick": {"decay": [0.7, 0.2]}}}, "knob_limits.kick.decay: expected [low"),
                         ({"word_reach": [0.5]}, "'word_reach' must map each class")):
        (model / "timbre.json").write_text(json.dumps({"words": {}, **tables}))
        assert main(["generate", "kick", "--model", str(model), "--steps", "1", "--output", str(tmp_path / "x.wav")]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    good = {"words": {}, "knob_limits": {"kick": {"decay": [0.1, 0.9]}}, "word_reach": {"kick": {"808": None}},
            "pair_reach": {"kick": {"decay:low+weight:high": 0.5, "808+punch:high": 1.0, "808+decay:low": None,
                                    "decay:high+brightness:high+punch:high": 0.5}}}
    (model / "timbre.json").write_text(json.dumps(good))
    assert load_bundle(model).pair_reach == good["pair_reach"]


def test_vocab_lists_the_measured_class_words(knob_model, tmp_path, capsys) -> None:
    import shutil

    from sampleforge.cli import main

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    (model / "timbre.json").write_text('{"words": {"tom": {"high": {"weight": 0.12, "decay": 0.22}}}}')
    assert main(["vocab", "--model", str(model)]) == 0
    out = capsys.readouterr().out
    assert "long     decay 0.85" in out  # the general table
    assert "high tom" in out and "weight 0.12" in out.split("high tom")[1].splitlines()[0]


def test_the_cli_and_the_service_list_the_same_timbre_words(knob_model, tmp_path, capsys) -> None:
    """`vocab --json` and /v1/vocab carry the model's knobs, the words that set them, its limits and word and pair
    reaches."""
    import json
    import shutil

    from fastapi.testclient import TestClient

    from sampleforge.cli import main
    from sampleforge.pipeline import Generator
    from sampleforge.serve.app import create_app
    from sampleforge.serve.config import ServeConfig
    from sampleforge.serve.service import Service

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    timbre = {"words": {"tom": {"high": {"weight": 0.12, "decay": 0.22}}},
              "knob_limits": {"snare": {"brightness": [0.2, 0.6]}}, "word_reach": {"tom": {"high": 0.5}},
              "pair_reach": {"tom": {"decay:low+weight:low": 0.75}}}
    (model / "timbre.json").write_text(json.dumps(timbre))
    assert main(["vocab", "--model", str(model), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    table = listed["timbre"]
    assert table["knobs"] == list(KNOBS) and table["words"]["long"] == WORD_KNOBS["long"]
    assert table["class_words"] == timbre["words"] and table["knob_limits"] == timbre["knob_limits"]
    assert table["word_reach"] == {"tom": {"high": 0.5}} and listed["keywords"]["808"] == 10
    assert table["pair_reach"] == timbre["pair_reach"]
    service = Service(ServeConfig(storage=tmp_path / "storage", model=str(model)),
                      Generator.from_pretrained(model, device="cpu"))
    with TestClient(create_app(service, manage_service=False)) as client:
        assert client.get("/v1/vocab").json()["timbre"] == table


@pytest.fixture(scope="module")
def firm_plain_model(knob_model, tmp_path_factory: pytest.TempPathFactory):
    """The knob model, guiding a prompt that sets no knob at 4.5 (the rest at sampleforge's 3)."""
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("models") / "firm"
    shutil.copytree(knob_model, folder)
    # the U-Net's zero-initialised layers get weights, so that its output (and the guidance) depends on the prompt
    g = torch.Generator().manual_seed(0)
    state = load_file(folder / "unet.safetensors")
    state = {k: 0.1 * torch.randn(v.shape, generator=g) if not v.any() else v for k, v in state.items()}
    save_file(state, folder / "unet.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["diffusion"]["cfg_scale_no_knobs"] = 4.5
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_a_prompt_that_sets_no_knob_takes_the_models_own_scale_for_it(firm_plain_model, knob_model) -> None:
    from sampleforge.params import GenerationParams
    from sampleforge.pipeline import Generator

    gen = Generator.from_pretrained(firm_plain_model, device="cpu")
    scale = lambda prompt, **kw: gen.resolve(GenerationParams(prompt=prompt, **kw)).cfg_scale  # noqa: E731
    assert scale("kick") == 4.5 and scale("") == 4.5
    assert scale("long kick") == 3.0 and scale("kick", decay=0.2) == 3.0  # a knob by word or by value
    assert scale("kick", cfg_scale=2.0) == 2.0 and scale("long kick", cfg_scale=2.0) == 2.0  # asked: as asked
    assert gen.describe()["cfg_scale_no_knobs"] == 4.5
    other = Generator.from_pretrained(knob_model, device="cpu")
    assert other.resolve(GenerationParams(prompt="kick")).cfg_scale == 3.0 and "cfg_scale_no_knobs" not in other.describe()
    plain = gen.generate_full("kick", steps=2, seed=3, vocoder=False)
    assert plain.params.cfg_scale == 4.5 and plain.cfg_scales is None
    assert torch.equal(plain.latents, gen.generate_full("kick", steps=2, seed=3, cfg_scale=4.5, vocoder=False).latents)
    assert not torch.allclose(plain.latents, gen.generate_full("kick", steps=2, seed=3, cfg_scale=3.0, vocoder=False).latents)
    # a batch of both kinds: each clip with its own prompt's scale, as if alone (seed + k)
    mixed = gen.generate_full(["kick", "long kick"], steps=2, seed=3, vocoder=False)
    assert mixed.cfg_scales == [4.5, 3.0]
    long_alone = gen.generate_full("long kick", steps=2, seed=4, vocoder=False)
    torch.testing.assert_close(mixed.latents[:1], plain.latents, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(mixed.latents[1:], long_alone.latents, rtol=1e-4, atol=1e-5)
    # the plan of a call (what a command names its files by) says the settings, clips and seeds its run gives
    for prompts in (["kick", "kick"], ["long kick"], ["long kick", "kick"]):
        asked = GenerationParams(seed=3, steps=2, count=2)
        plan, run = gen.plan(asked, prompts), gen.generate_full(prompts, params=asked, vocoder=False)
        assert (plan.params, plan.prompts, plan.seeds) == (run.params, run.prompts, run.seeds)
    assert long_alone.params.cfg_scale == 3.0 == gen.plan(GenerationParams(seed=3), ["long kick"]).params.cfg_scale


def test_a_morph_carries_each_ends_own_guidance(firm_plain_model) -> None:
    from sampleforge.pipeline import Generator, MorphEnd

    gen = Generator.from_pretrained(firm_plain_model, device="cpu")
    g = gen.morph(MorphEnd("kick", seed=3), MorphEnd("long kick", seed=4), steps=2, morph_steps=3, vocoder=False)
    assert g.cfg_scales == [4.5, 3.75, 3.0]
    kick = gen.generate_full("kick", steps=2, seed=3, vocoder=False).latents  # the end is the plain prompt's clip
    torch.testing.assert_close(g.latents[:1], kick, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(kick, gen.generate_full("kick", steps=2, seed=3, cfg_scale=3.0, vocoder=False).latents)
    long_kick = gen.generate_full("long kick", steps=2, seed=4, vocoder=False).latents  # and the other end, at 3
    torch.testing.assert_close(g.latents[2:], long_kick, rtol=1e-4, atol=1e-5)


def test_the_config_refuses_a_scale_out_of_range() -> None:
    from sampleforge.model_config import DiffusionConfig
    from sampleforge.strict import ConfigError

    with pytest.raises(ConfigError, match=r"diffusion.cfg_scale_no_knobs must be in \[0, 30\], got 31"):
        DiffusionConfig(cfg_scale_no_knobs=31)


def test_the_service_and_kits_fill_in_each_prompts_own_guidance(firm_plain_model, tmp_path) -> None:
    from sampleforge.kit.build import build_kit
    from sampleforge.pipeline import Generator
    from sampleforge.serve.config import ServeConfig
    from sampleforge.serve.schemas import GenerateRequest
    from sampleforge.serve.service import Service

    gen = Generator.from_pretrained(firm_plain_model, device="cpu")
    service = Service(ServeConfig(storage=tmp_path / "storage", model=str(gen.name)), gen)
    served = service.model(None)
    fill = lambda **req: service.job_params(GenerateRequest(**req), served).cfg_scale  # noqa: E731
    assert fill(prompt="kick") == 4.5 and fill(prompt="long kick") == 3.0 and fill(prompt="kick", decay=0.3) == 3.0
    assert fill(prompt="kick", cfg_scale=6.0) == 6.0
    assert served.info()["defaults"] == {"steps": served.default_steps, "cfg_scale": 3.0, "cfg_scale_no_knobs": 4.5}
    # a kit: each pad with its own prompt's scale ("long" sets a knob on every pad)
    plain = build_kit(gen, prompt="", pieces="kick,snare", steps=1, seed=5, vocoder=False)
    assert [s.cfg_scale for s in plain.samples] == [4.5, 4.5] and plain.params["cfg_scale"] == 4.5
    long = build_kit(gen, prompt="long", pieces="kick,snare", steps=1, seed=5, vocoder=False)
    assert [s.cfg_scale for s in long.samples] == [3.0, 3.0] and long.params["cfg_scale"] == 3.0


def test_knob_limits_are_measured_written_read_and_listed(knob_model, tmp_path, capsys) -> None:
    """`eval knob-limits --write` stores a range per class and knob in timbre.json; generation holds a word's
    value in it (not an explicit one) and `vocab` lists it."""
    import json
    import shutil

    from sampleforge.cli import main
    from sampleforge.pipeline import Generator

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    args = ["eval", "knob-limits", "--model", str(model), "--classes", "snare", "-n", "8", "--steps", "1"]
    assert main([*args, "--write"]) == 2
    assert "has no timbre.json" in capsys.readouterr().err
    assert main(["eval", "knob-limits", "--model", str(model), "--classes", "snere"]) == 2
    assert "unknown class 'snere'" in capsys.readouterr().err
    (model / "timbre.json").write_text(json.dumps({"words": {}}))
    out = tmp_path / "limits.json"
    assert main([*args, "--write", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    stored = json.loads((model / "timbre.json").read_text())
    assert stored["words"] == {} and stored["knob_limits"] == result["knob_limits"]
    limited = result["knob_limits"].get("snare", {})  # each knob limited, or left so (judged unsure at 0.5)
    assert sorted([*limited, *(u.removeprefix("snare.") for u in result["unlimited"])]) == sorted(KNOBS)
    middle = result["values"].index(0.5)
    for knob in KNOBS:
        shares = result["judged"]["snare"][knob]
        assert len(shares) == len(result["values"]) and all(0 <= x <= 1 for x in shares)
        assert (knob in limited) == (shares[middle] >= 0.9)
    for low, high in limited.values():
        assert 0 <= low <= 0.5 <= high <= 1
    assert result["settings"]["n"] == 8 and result["settings"]["steps"] == 1
    from sampleforge.cli import build_parser
    from sampleforge.eval.descriptors import LIMIT_CLIPS

    assert build_parser("eval").parse_known_args(["eval", "knob-limits", "--model", "m"])[0].count == LIMIT_CLIPS == 96
    stored["knob_limits"] = {"snare": {"brightness": [0.2, 0.6]}, "closed_hat": {"brightness": [0.1, 0.7]},
                             "shaker": {"brightness": [0.3, 0.65]}}
    (model / "timbre.json").write_text(json.dumps(stored))
    gen = Generator.from_pretrained(model, device="cpu")
    assert gen.knob_values("bright snare") == {"brightness": 0.6}
    # a family word or an instrument name alone names no class for the knobs (its keyword carries the sound)
    assert gen.knob_values("bright hi hat") == gen.knob_values("bright tambourine") == WORD_KNOBS["bright"]
    assert gen.knob_values("bright closed hat") == {"brightness": 0.7}
    assert gen.knob_values("bright snare tambourine") == {"brightness": 0.6}
    assert gen.knob_values("bright snare", {"brightness": 0.9}) == {"brightness": 0.9}
    assert gen.knob_values("bright kick") == WORD_KNOBS["bright"]
    capsys.readouterr()
    assert main(["vocab", "--model", str(model)]) == 0
    assert "snare       brightness 0.20-0.60" in capsys.readouterr().out


class _ScriptedModel:
    """A generator whose clips carry the knobs they were asked with, for a judge that decides by them; its words
    set knobs as a Generator's do."""

    knob_values = Generator.knob_values
    _one_class = staticmethod(Generator._one_class)

    def __init__(self, class_words: dict, word_reach: dict | None = None) -> None:
        from types import SimpleNamespace

        self.bundle = SimpleNamespace(config=SimpleNamespace(text=SimpleNamespace(knobs=list(KNOBS))),
                                      class_words=class_words, knob_limits={}, word_reach=word_reach or {},
                                      pair_reach={}, vocab=SimpleNamespace(classes={}))
        self.calls: list[tuple[str, dict, int]] = []

    def generate_full(self, prompt: str, n: int, seed: int, **kw):
        from types import SimpleNamespace

        knobs = {k: kw[k] for k in KNOBS if k in kw}
        self.calls.append((prompt, knobs, seed))
        worded = float(len(prompt.split()) > 1)  # a word before the class's
        audio = torch.tensor([[seed, worded, *(knobs.get(k, 0.5) for k in KNOBS)]] * n, dtype=torch.float64)
        return SimpleNamespace(audio=audio, params=SimpleNamespace(cfg_scale=3.0))


def test_word_reach_finds_how_far_a_words_knobs_go_together(monkeypatch) -> None:
    """A word fails when its share is surely under the class prompt's on both seed blocks; it is then tried with
    its knobs nearer the middle, and its reach is the first that holds. A word whose keyword alone leaves the
    class gets no reach; one that fails on a single block (noise) keeps its knobs."""
    from sampleforge.eval import descriptors

    # measured again: the stored reach of "high" is not applied before it is measured
    model = _ScriptedModel({"tom": {"high": {"decay": 0.05, "weight": 0.05}, "acoustic": {"brightness": 0.9}}},
                           word_reach={"tom": {"high": 0.5}})

    def judge(clf, wavs, category):
        seed, worded, *knobs = wavs[0].tolist()
        distance = sum(abs(v - 0.5) for v in knobs)
        if seed >= descriptors.REACH_SEEDS and clf == "noisy" and distance > 0.3:
            return 0.5  # the second block of seeds only
        if clf == "keyword" and worded:
            return 0.2
        return 1.0 if distance <= 0.66 or clf == "noisy" else 0.6  # high's two knobs at 0.05 (0.9 out) fail

    monkeypatch.setattr(descriptors, "_judged", judge)
    result = descriptors.word_reach(model, "judge", n=48, classes=["tom"])
    words = result["judged"]["tom"]["words"]
    assert result["word_reach"] == {"tom": {"high": 0.5}}  # at 0.75 0.675 out: fails; at 0.5 0.45: holds
    assert words["high"]["tried"] == {"0.75": 0.6, "0.5": 1.0} and words["high"]["judged_2n"] == 0.6
    assert words["high"]["knobs"] == {"decay": 0.05, "weight": 0.05}
    assert "tried" not in words["acoustic"] and words["acoustic"]["judged"] == 1.0  # 0.4 out: holds
    assert set(words) >= {"short", "bright", "high", "acoustic"} and "snare" not in words
    assert result["judged"]["tom"]["class_prompt"] == 1.0 and result["judged"]["tom"]["class_prompt_2n"] == 1.0
    tried = [(k, s) for p, k, s in model.calls if p == "high tom"]
    assert ({"decay": 0.275, "weight": 0.275}, descriptors.REACH_SEEDS) in tried  # both blocks at each reach

    keyword = descriptors.word_reach(_ScriptedModel({}), "keyword", n=48, classes=["snare"])
    assert keyword["word_reach"]["snare"]["long"] is None  # stored: generation warns of the word
    assert keyword["judged"]["snare"]["words"]["long"]["reach"] is None  # even at the middle it fails: the word
    assert list(keyword["judged"]["snare"]["words"]["long"]["tried"]) == ["0.75", "0.5", "0.25", "0.0"]
    noisy = descriptors.word_reach(_ScriptedModel({}), "noisy", n=48, classes=["snare"])
    assert noisy["word_reach"] == {} and all("tried" not in w for w in noisy["judged"]["snare"]["words"].values())


def test_a_class_prompt_short_of_the_gate_by_noise_is_judged_on_twice_the_clips(monkeypatch) -> None:
    """The judge must know a class before its words can fail: 90 % of the class prompt's clips. A first block short
    of that by no more than its noise (42 of 48) is pooled with a second; a share surely under it (36 of 48) is not
    measured again, and its words are not judged."""
    from sampleforge.eval import descriptors

    def judging(first: float, second: float):
        def judge(clf, wavs, category):
            seed, worded, *_ = wavs[0].tolist()
            if worded:
                return 0.2
            return second if seed >= descriptors.REACH_SEEDS else first
        return judge

    for first, second, pooled, fails in ((42 / 48, 46 / 48, 0.9167, True), (42 / 48, 42 / 48, 0.875, False),
                                         (36 / 48, 48 / 48, None, False), (44 / 48, 30 / 48, None, True)):
        monkeypatch.setattr(descriptors, "_judged", judging(first, second))
        model = _ScriptedModel({})
        result = descriptors.word_reach(model, "judge", n=48, classes=["tom"])
        row = result["judged"]["tom"]
        assert row["class_prompt"] == round(first, 4)
        if pooled is None:  # at 90 % or surely under it: one block says
            assert "class_prompt_2n" not in row or first >= 0.9
        else:
            assert row["class_prompt_2n"] == pooled
        assert bool(result["word_reach"]) == fails, (first, second)
        assert all(("tried" in w) == fails for w in row["words"].values()), row
        class_calls = {s for p, k, s in model.calls if p == "tom"}
        assert (descriptors.REACH_SEEDS in class_calls) == (pooled is not None or fails)


def test_word_reach_is_written_and_read_by_generation(knob_model, tmp_path, capsys) -> None:
    import json
    import shutil

    from sampleforge.cli import main
    from sampleforge.pipeline import Generator

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    args = ["eval", "word-reach", "--model", str(model), "--classes", "kick", "-n", "8", "--steps", "1"]
    assert main([*args, "--write"]) == 2
    assert "has no timbre.json" in capsys.readouterr().err
    (model / "timbre.json").write_text(json.dumps({"words": {"kick": {"808": {"weight": 0.9, "decay": 0.8}}},
                                                   "word_reach": {"snare": {"long": 0.5}}}))
    out = tmp_path / "reach.json"
    assert main([*args, "--write", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    stored = json.loads((model / "timbre.json").read_text())
    assert stored["word_reach"] == {"snare": {"long": 0.5}, **result["word_reach"]}  # merged with the other classes
    words = result["judged"]["kick"]["words"]
    assert words["808"]["knobs"] == {"weight": 0.9, "decay": 0.8} and set(WORD_KNOBS) <= set(words)
    assert all(0 <= w["judged"] <= 1 for w in words.values())
    assert "words keep the class" in printed and str(out) in printed
    stored["word_reach"] = {"kick": {"808": 0.5, "long": None}}
    (model / "timbre.json").write_text(json.dumps(stored))
    gen = Generator.from_pretrained(model, device="cpu")
    assert gen.knob_values("808 kick") == {"weight": 0.7, "decay": 0.65}
    assert gen.knob_values("808 kick", {"weight": 0.95}) == {"weight": 0.95, "decay": 0.65}
    assert gen.knob_values("long kick") == WORD_KNOBS["long"]  # a word that leaves the class keeps its knobs
    (warned,) = [w for w in gen.check_prompt("long kick") if "out of its class" in w]
    assert warned.startswith("'long' takes a kick out of its class")
    assert not any("out of its class" in w for w in gen.check_prompt("808 kick") + gen.check_prompt("long snare"))
    capsys.readouterr()
    assert main(["vocab", "--model", str(model)]) == 0
    assert "  kick        808 0.5  long leaves the class" in capsys.readouterr().out


def test_pair_reach_finds_how_far_two_words_knobs_go_together(monkeypatch) -> None:
    """Each two knobs of a class are set low and high by two words ("short thin tom"); a corner fails by the word
    reach's rule and is tried with its two knobs nearer the middle. A pair with a word that leaves the class by
    itself is left out; a corner that fails even at the middle gets None."""
    from sampleforge.eval import descriptors

    model = _ScriptedModel({}, word_reach={"tom": {"bright": None}})

    def judge(clf, wavs, category):
        seed, worded, decay, brightness, weight, punch = wavs[0].tolist()
        if clf == "keyword" and worded:
            return 0.2
        return 0.6 if decay < 0.5 and weight < 0.5 and (0.5 - decay) + (0.5 - weight) > 0.4 else 1.0

    monkeypatch.setattr(descriptors, "_judged", judge)
    result = descriptors.pair_reach(model, "judge", n=48, classes=["tom"])
    pairs = result["judged"]["tom"]["pairs"]
    assert result["pair_reach"] == {"tom": {"decay:low+weight:low": 0.5}}  # 0.7 out fails, at 0.75 0.525 too
    low = pairs["decay:low+weight:low"]
    assert low["prompt"] == "short thin tom" and low["knobs"] == {"decay": 0.15, "weight": 0.15}
    assert low["tried"] == {"0.75": 0.6, "0.5": 1.0} and low["judged_2n"] == 0.6
    assert len(pairs) == 6 * 4 - 3 * 2  # every corner of every two knobs, but those of "bright" (3 knobs x 2 ends)
    assert not any("bright" in p["prompt"] for p in pairs.values())
    tried = [k for p, k, s in model.calls if p == "short thin tom"]
    assert {"decay": 0.2375, "weight": 0.2375} in tried and result["words"]["decay"] == ["short", "long"]
    reached = descriptors.pair_reach(_ScriptedModel({}, {"snare": {"short": 0.5}}), "judge", n=48, classes=["snare"])
    assert reached["judged"]["snare"]["pairs"]["decay:low+weight:low"]["knobs"] == {"decay": 0.325, "weight": 0.15}
    keyword = descriptors.pair_reach(_ScriptedModel({}), "keyword", n=48, classes=["snare"])
    assert set(keyword["pair_reach"]["snare"].values()) == {None} and len(keyword["pair_reach"]["snare"]) == 24


def test_two_words_move_their_knobs_by_their_corners_reach() -> None:
    """The pair reach moves two knobs set by two different words; not the knobs of one word, not a value given."""
    from sampleforge.timbre import corner, pairs_leaving

    assert corner({"weight": 0.85, "decay": 0.15}) == "decay:low+weight:high" and corner({"decay": 0.5, "punch": 1}) is None
    pairs = {"tom": {"decay:low+weight:low": 0.5, "decay:low+punch:high": 0.25, "brightness:high+weight:low": None}}
    assert knobs_from_words(["short", "thin", "tom"], category="tom", pairs=pairs) == {"decay": 0.325, "weight": 0.325}
    assert knobs_from_words(["short", "thin", "kick"], category="kick", pairs=pairs) == {"decay": 0.15, "weight": 0.15}
    assert knobs_from_words(["tight", "tom"], category="tom", pairs=pairs) == WORD_KNOBS["tight"]  # one word's two
    assert knobs_from_words(["short", "tom"], {"weight": 0.1}, "tom", pairs=pairs) == {"weight": 0.1, "decay": 0.15}
    both = knobs_from_words(["short", "thin", "punchy", "tom"], category="tom", pairs=pairs)
    assert both == {"decay": 0.4125, "weight": 0.325, "punch": 0.5875}  # decay in two corners: the shorter reach
    assert knobs_from_words(["thin", "bright", "tom"], category="tom", pairs=pairs) == {"weight": 0.15, "brightness": 0.85}
    assert pairs_leaving(["thin", "bright", "tom"], "tom", pairs=pairs) == [("thin", "bright")]
    assert pairs_leaving(["bright", "small", "thin", "tom"], "tom", pairs=pairs) == [("bright", "small")]
    assert pairs_leaving(["short", "thin", "tom"], "tom", pairs=pairs) == []


def test_a_class_word_with_a_knob_end_comes_before_the_corner() -> None:
    """A reach measured for a word with another word's knob end ("high" and brightness high, a tom) moves the knobs
    of those two words in place of their corner's, whichever word sets that end; 1 keeps them where the words put
    them; None leaves them and says the two words leave the class. Other pairs keep their corners."""
    from sampleforge.timbre import pairs_leaving, word_end

    own = {"tom": {"high": {"decay": 0.2, "weight": 0.1}}}
    pairs = {"tom": {"brightness:high+weight:low": 0.75, "decay:low+brightness:high": 0.75,
                     "high+brightness:high": 0.5, "high+punch:high": 1.0, "decay:low+punch:high": 0.5,
                     "high+punch:low": None, "decay:low+weight:low": 0.5}}
    assert word_end("high", "brightness", 0.85) == "high+brightness:high" and word_end("x", "punch", 0.2).endswith("low")
    bright = knobs_from_words(["bright", "high", "tom"], category="tom", class_words=own, pairs=pairs)
    assert bright == {"brightness": 0.675, "decay": 0.35, "weight": 0.3}  # all three halfway, not 3/4 (the corners)
    assert knobs_from_words(["crisp", "high", "tom"], category="tom", class_words=own, pairs=pairs)["brightness"] == 0.65
    punchy = knobs_from_words(["punchy", "high", "tom"], category="tom", class_words=own, pairs=pairs)
    assert punchy == {"punch": 0.85, "decay": 0.2, "weight": 0.1}  # measured to hold: the corner's 0.5 is not used
    smooth = knobs_from_words(["smooth", "high", "tom"], category="tom", class_words=own, pairs=pairs)
    assert smooth == {"punch": 0.2, "decay": 0.2, "weight": 0.1}
    assert pairs_leaving(["high", "smooth", "tom"], "tom", own, pairs=pairs) == [("high", "smooth")]
    assert pairs_leaving(["punchy", "high", "tom"], "tom", own, pairs=pairs) == []
    # a keyword that sets no knob, with another word's knob end: that knob alone moves, or the two are said to leave
    pairs["tom"].update({"soft+decay:high": 0.5, "soft+decay:low": None})
    assert knobs_from_words(["long", "soft", "tom"], category="tom", pairs=pairs) == {"decay": 0.675}
    assert knobs_from_words(["short", "soft", "tom"], category="tom", pairs=pairs) == {"decay": 0.15}
    assert pairs_leaving(["soft", "short", "tom"], "tom", pairs=pairs) == [("soft", "short")]
    assert pairs_leaving(["long", "soft", "tom"], "tom", pairs=pairs) == []
    # three words: "high" and "bright" by their measured pair; "short" with either by a corner (decay's 0.5 the
    # shorter of its two); "short" sets the decay before "high" does
    three = knobs_from_words(["short", "bright", "high", "tom"], category="tom", class_words=own, pairs=pairs)
    assert three == {"decay": 0.325, "brightness": 0.675, "weight": 0.3}
    pairs["tom"]["decay:low+weight:low"] = None  # no reach for that corner: the decay takes the other corner's 3/4
    three = knobs_from_words(["short", "bright", "high", "tom"], category="tom", class_words=own, pairs=pairs)
    assert three == {"decay": 0.2375, "brightness": 0.675, "weight": 0.3}


def test_three_words_move_their_knobs_further_by_their_corner() -> None:
    """Three knobs set by three words move on from where their pairs put them, by their corner's reach; not
    without a third word, nor when one word sets two of them; None says the three leave the class."""
    from sampleforge.timbre import pairs_leaving

    pairs = {"kick": {"decay:high+brightness:high": 0.5, "decay:high+brightness:high+punch:high": 0.5,
                      "decay:low+brightness:low+punch:low": None}}
    three = knobs_from_words(["long", "bright", "punchy", "kick"], category="kick", pairs=pairs)
    assert three == {"decay": 0.5875, "brightness": 0.5875, "punch": 0.675}  # 1/4 and 1/2 of the way out
    assert knobs_from_words(["long", "bright", "punchy", "kick"], category="kick", pairs=pairs, three_words=False) \
        == {"decay": 0.675, "brightness": 0.675, "punch": 0.85}
    assert knobs_from_words(["long", "bright", "kick"], category="kick", pairs=pairs) == {"decay": 0.675, "brightness": 0.675}
    tight = knobs_from_words(["tight", "dark", "kick"], category="kick", pairs=pairs)  # "tight": decay and punch
    assert tight == {"decay": 0.2, "punch": 0.7, "brightness": 0.15}
    assert pairs_leaving(["smooth", "short", "dark", "kick"], "kick", pairs=pairs) == [("smooth", "short", "dark")]
    assert pairs_leaving(["smooth", "short", "kick"], "kick", pairs=pairs) == []


def test_three_words_are_measured_from_where_their_pairs_put_them(monkeypatch) -> None:
    """eval pair-reach --three-words: each corner of each three knobs, its knobs where the two-word reaches put
    them; a failing corner gets the reach that holds, moving its three knobs further; a word measured for the class
    (its own meaning) is left out."""
    from sampleforge.eval import descriptors

    model = _ScriptedModel({"tom": {"deep": {"decay": 0.9}}})
    model.bundle.pair_reach = {"tom": {"decay:high+brightness:high": 0.5}}

    def judge(clf, wavs, category):
        seed, worded, decay, brightness, weight, punch = wavs[0].tolist()
        return 0.5 if min(decay, brightness, punch) > 0.5 and decay + brightness + punch > 2.0 else 1.0

    monkeypatch.setattr(descriptors, "_judged", judge)
    result = descriptors.pair_reach(model, "judge", n=48, classes=["tom"], three_words=True)
    pairs = result["judged"]["tom"]["pairs"]
    assert len(pairs) == 4 * 8 - 3 * 4  # each corner of each three knobs, but those with "deep" (weight high)
    top = pairs["decay:high+brightness:high+punch:high"]
    assert top["prompt"] == "long bright punchy tom" and top["knobs"] == {"decay": 0.675, "brightness": 0.675, "punch": 0.85}
    assert top["tried"] == {"0.75": 0.5, "0.5": 1.0}  # at 3/4: 0.63 + 0.63 + 0.76 > 2
    assert result["pair_reach"] == {"tom": {"decay:high+brightness:high+punch:high": 0.5}}
    assert "deep" not in " ".join(p["prompt"] for p in pairs.values())


def test_class_word_pairs_are_measured_with_each_other_knob_end(monkeypatch) -> None:
    """eval pair-reach --class-words: each word a class measured, with the word of each end of a knob it does not
    set; a failing pair gets the reach that holds, moving all the knobs of both words. A holding pair that a corner
    of its knobs would move is judged with that move too: it gets 1 (the corner cannot move it) only where the move
    is surely worse on both blocks of seeds; otherwise the corner keeps moving it."""
    from sampleforge.eval import descriptors

    model = _ScriptedModel({"tom": {"high": {"decay": 0.2, "weight": 0.1}, "dark": {"decay": 0.9}}},
                           word_reach={"tom": {"long": None}})
    model.bundle.pair_reach = {"tom": {"weight:low+punch:high": 0.75, "decay:low+punch:low": 0.75,
                                       "high+punch:low": 0.25}}  # a class-word entry: not a corner, not applied

    def judge(clf, wavs, category):
        seed, worded, decay, brightness, weight, punch = wavs[0].tolist()
        second = seed >= descriptors.REACH_SEEDS
        if punch == 0.7625:
            return 0.5  # "punchy high tom" moved by its corner: worse on both blocks
        if punch in (0.2, 0.275) and weight == 0.1:  # "smooth high tom": worse moved on the first only
            return {(0.275, False): 0.85, (0.275, True): 1.0, (0.2, False): 1.0, (0.2, True): 0.8}[punch, second]
        return 0.5 if brightness > 0.5 and weight < 0.5 and (brightness - 0.5) + (0.5 - weight) > 0.4 else 1.0

    monkeypatch.setattr(descriptors, "_judged", judge)
    result = descriptors.pair_reach(model, "judge", n=48, classes=["tom"], class_words=True)
    pairs = result["judged"]["tom"]["pairs"]
    # not "dark high tom" ("dark" is measured for the class: it sets the decay) nor "long dark tom" ("long" leaves it)
    assert set(pairs) == {"high+brightness:high", "high+punch:low", "high+punch:high", "dark+brightness:high",
                          "dark+weight:low", "dark+weight:high", "dark+punch:low", "dark+punch:high"}
    bright = pairs["high+brightness:high"]
    assert bright["prompt"] == "bright high tom" and bright["knobs"] == {"brightness": 0.85, "decay": 0.2, "weight": 0.1}
    assert bright["tried"] == {"0.75": 0.5, "0.5": 1.0} and bright["reach"] == 0.5
    tried = [k for p, k, s in model.calls if p == "bright high tom"]
    assert {"brightness": 0.675, "decay": 0.35, "weight": 0.3} in tried  # every knob of both words moved
    assert result["pair_reach"] == {"tom": {"high+brightness:high": 0.5, "high+punch:high": 1.0}}
    punchy, smooth = pairs["high+punch:high"], pairs["high+punch:low"]
    assert punchy["with_corners"] == {"knobs": {"punch": 0.762, "decay": 0.2, "weight": 0.2}, "judged": 0.5,
                                      "judged_2n": 0.5} and punchy["judged_2n"] == 1.0
    assert smooth["with_corners"] == {"knobs": {"punch": 0.275, "decay": 0.275, "weight": 0.1}, "judged": 0.85,
                                      "judged_2n": 0.925} and smooth["judged_2n"] == 0.9
    assert "reach" not in smooth and "with_corners" not in pairs["dark+weight:high"]  # no corner moves it
    assert result["class_words"] is True and "tried" not in smooth

    # a keyword of the class that sets no knob ("soft": 20 tom clips), not a knob word nor the class's own; --words
    model.bundle.vocab.classes = {"soft": {"tom": 20}, "rare": {"tom": 19}, "bright": {"tom": 40}, "tom": {"tom": 99}}
    assert descriptors.class_keywords(model, "tom") == {"soft": {}}
    only = descriptors.pair_reach(model, "judge", n=48, classes=["tom"], class_words=True, words=["soft"])
    soft = only["judged"]["tom"]["pairs"]
    assert soft["soft+weight:low"]["prompt"] == "thin soft tom" and soft["soft+weight:low"]["knobs"] == {"weight": 0.15}
    assert len(soft) == 6 and all(name.startswith("soft+") for name in soft)  # not "long" (leaves), "dark" (own)
    with pytest.raises(ValueError, match="class-word"):
        descriptors.pair_reach(model, "judge", n=48, classes=["tom"], words=["soft"])


def test_pair_reach_is_written_and_read_by_generation(knob_model, tmp_path, capsys) -> None:
    import json
    import shutil

    from sampleforge.cli import main
    from sampleforge.pipeline import Generator

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    (model / "timbre.json").write_text(json.dumps({"words": {}, "pair_reach": {"snare": {"decay:low+weight:low": 0.5}}}))
    out = tmp_path / "pairs.json"
    assert main(["eval", "pair-reach", "--model", str(model), "--classes", "kick", "-n", "8", "--steps", "1",
                 "--write", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    stored = json.loads((model / "timbre.json").read_text())
    assert stored["pair_reach"] == {"snare": {"decay:low+weight:low": 0.5}, **result["pair_reach"]}
    pairs = result["judged"]["kick"]["pairs"]
    assert len(pairs) == 24 and pairs["brightness:high+punch:low"]["prompt"] == "bright smooth kick"
    assert "pairs keep the class" in printed and str(out) in printed
    stored["pair_reach"] = {"kick": {"decay:low+weight:low": 0.5, "decay:high+brightness:high": None}}
    (model / "timbre.json").write_text(json.dumps(stored))
    gen = Generator.from_pretrained(model, device="cpu")
    assert gen.knob_values("short thin kick") == {"decay": 0.325, "weight": 0.325}
    assert gen.knob_values("short thin kick", {"weight": 0.1}) == {"weight": 0.1, "decay": 0.15}
    (warned,) = [w for w in gen.check_prompt("long bright kick") if "out of its class" in w]
    assert warned.startswith("'long' and 'bright' together take a kick out of its class")
    assert not any("out of its class" in w for w in gen.check_prompt("short thin kick"))
    stored["pair_reach"]["kick"]["decay:low+brightness:low+punch:high"] = None
    (model / "timbre.json").write_text(json.dumps(stored))
    (warned,) = [w for w in Generator.from_pretrained(model, device="cpu").check_prompt("punchy short dark kick")
                 if "out of its class" in w]
    assert warned.startswith("'punchy', 'short' and 'dark' together take a kick out of its class")
    capsys.readouterr()
    assert main(["vocab", "--model", str(model)]) == 0
    assert "  kick        (decay low, weight low) 0.5  (decay high, brightness high) leaves the class" in capsys.readouterr().out

    # --class-words: its pairs replace the ones it measured, and the corners and other classes stay
    stored["words"] = {"kick": {"808": {"weight": 0.9}}}
    stored["pair_reach"]["kick"]["808+decay:low"] = 0.25
    stored["pair_reach"]["kick"]["909+decay:low"] = 0.25
    (model / "timbre.json").write_text(json.dumps(stored))
    assert main(["eval", "pair-reach", "--class-words", "--model", str(model), "--classes", "kick", "-n", "8",
                 "--steps", "1", "--write", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["judged"]["kick"]["pairs"]) == {f"808+{k}:{e}" for k in ("decay", "brightness", "punch")
                                                       for e in ("low", "high")}
    assert result["judged"]["kick"]["pairs"]["808+decay:low"]["prompt"] == "short 808 kick"
    kick = json.loads((model / "timbre.json").read_text())["pair_reach"]["kick"]
    assert {k: kick[k] for k in ("decay:low+weight:low", "decay:high+brightness:high", "909+decay:low")} == \
        {"decay:low+weight:low": 0.5, "decay:high+brightness:high": None, "909+decay:low": 0.25}
    assert kick.get("808+decay:low") == result["pair_reach"].get("kick", {}).get("808+decay:low")  # measured anew
    assert "wrote pair_reach into" in capsys.readouterr().out
    assert main(["eval", "pair-reach", "--class-words", "--three-words", "--model", str(model)]) == 2
    assert "--class-words and --three-words" in capsys.readouterr().err
    assert main(["eval", "pair-reach", "--words", "808", "--model", str(model)]) == 2
    assert "give it with --class-words" in capsys.readouterr().err


def test_every_file_records_the_knobs_its_clip_was_conditioned_on(knob_model, tmp_path, capsys) -> None:
    """generate (CLI and Python), variations, morphs, the service and kits write into each file the knob values its
    words set, held by the model's limits and reaches, beside the ones given: given again, they make the same
    clip."""
    import json
    import shutil

    from fastapi.testclient import TestClient

    from sampleforge import api
    from sampleforge.audio.io import read_metadata
    from sampleforge.cli import main
    from sampleforge.kit.build import build_kit
    from sampleforge.kit.writers import write_kit
    from sampleforge.pipeline import Generator
    from sampleforge.serve.app import create_app
    from sampleforge.serve.config import ServeConfig
    from sampleforge.serve.service import Service

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    (model / "timbre.json").write_text(json.dumps({"words": {}, "knob_limits": {"kick": {"decay": [0.0, 0.7]}}}))
    want = {"decay": 0.7, "punch": WORD_KNOBS["punchy"]["punch"], "brightness": 0.3}
    knobs = lambda f: json.loads(read_metadata(f)["knobs"])  # noqa: E731
    out = tmp_path / "cli.wav"
    assert main(["generate", "long punchy kick", "--model", str(model), "--steps", "1", "--seed", "4",
                 "--brightness", "0.3", "--output", str(out), "--quiet"]) == 0
    assert knobs(out) == want
    again = tmp_path / "again.wav"
    assert main(["generate", "kick", "--model", str(model), "--steps", "1", "--seed", "4", "--output", str(again),
                 "--quiet", *(x for k, v in want.items() for x in (f"--{k}", str(v)))]) == 0
    gen = Generator.from_pretrained(model, device="cpu")
    a = gen.generate_full("long punchy kick", steps=1, seed=4, brightness=0.3).audio
    b = gen.generate_full("long punchy kick", steps=1, seed=4, **want).audio
    assert torch.equal(a, b)
    py = api.generate(str(model), str(model), str(model), prompt="long punchy kick", ddim_steps=1, seed=4,
                      brightness=0.3, output_path=tmp_path / "py.wav")
    assert knobs(py) == want
    assert "knobs" not in read_metadata(api.generate(str(model), str(model), str(model), prompt="kick",
                                                     ddim_steps=1, seed=4, output_path=tmp_path / "plain.wav"))
    service = Service(ServeConfig(storage=tmp_path / "storage", model=str(model)), gen)
    with TestClient(create_app(service)) as client:
        job = client.post("/v1/generate", json={"prompt": "long punchy kick", "steps": 1, "brightness": 0.3}).json()
        for _ in range(600):
            view = client.get(f"/v1/jobs/{job['job_id']}").json()
            if view["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.05)
        assert view["state"] == "succeeded", view
        clip = tmp_path / "served.wav"
        clip.write_bytes(client.get(view["results"][0]["url"]).content)
        assert knobs(clip) == want
    from sampleforge import workflow
    from sampleforge.pipeline import MorphEnd

    (varied,) = workflow.vary(out, prompt="long punchy kick", brightness=0.3, steps=1, seed=2,
                              out_dir=tmp_path / "v", generator=gen)
    assert knobs(varied) == want
    morphed = workflow.morph(MorphEnd("long punchy kick", 1), MorphEnd("kick", 2), steps=1, morph_steps=3,
                             brightness=0.3, out_dir=tmp_path / "mo", generator=gen)
    meta = read_metadata(morphed[1])
    assert json.loads(meta["knobs_a"]) == want and json.loads(meta["knobs_b"]) == {"brightness": 0.3}
    kit = build_kit(gen, prompt="long", pieces="kick,snare", seed=1, steps=1, brightness=0.3)
    write_kit(kit, tmp_path / "kit")
    assert knobs(tmp_path / "kit" / "kick.wav") == {"decay": 0.7, "brightness": 0.3}
    assert knobs(tmp_path / "kit" / "snare.wav") == {"decay": WORD_KNOBS["long"]["decay"], "brightness": 0.3}


def test_a_knob_value_given_outside_the_class_s_range_is_said(knob_model, tmp_path) -> None:
    """A value given is used as given (never held), so a value outside the range where the model keeps the class
    (knob_limits) is said: by generate, vary, morph and a kit (naming its pads); a word's value is held in range
    and says nothing."""
    import json
    import shutil

    import numpy as np

    from sampleforge.kit.build import build_kit
    from sampleforge.pipeline import Generator, MorphEnd

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    (model / "timbre.json").write_text(json.dumps({"words": {}, "knob_limits": {"snare": {"brightness": [0.2, 0.6]}}}))
    gen = Generator.from_pretrained(model, device="cpu")
    needle = "brightness 0.9 on a snare: outside 0.2-0.6, where this model keeps a snare"
    assert any(needle in w for w in gen.generate_full("snare", steps=1, seed=1, brightness=0.9).warnings)
    for quiet in ({"brightness": 0.5}, {}):  # in range, or a word's value (held in range)
        assert not any("outside" in w for w in gen.generate_full("bright snare", steps=1, seed=1, **quiet).warnings)
    assert not any("outside" in w for w in gen.generate_full("kick", steps=1, seed=1, brightness=0.9).warnings)
    clip = np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.3
    assert any(needle in w for w in gen.vary(clip, prompt="snare", steps=1, seed=1, brightness=0.9, fit_steps=0,
                                              strength=0.5).warnings)
    assert any(needle in w for w in gen.morph(MorphEnd("kick", 1), MorphEnd("snare", 2), morph_steps=2, steps=1,
                                               brightness=0.9).warnings)
    kit = build_kit(gen, pieces="kick,snare", seed=1, steps=1, brightness=0.9)
    assert [w for w in kit.warnings if "outside" in w] == [f"{needle} (the drum judge says so: sampleforge eval "
                                                          "knob-limits); a value given is used as given, expect other "
                                                          "sounds (pads: 'snare')"]
