"""The descriptor check: effect sizes, real reference groups, and a run on the debug model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sampleforge.eval.descriptors import (
    ALPHA,
    CONTRASTS,
    Contrast,
    check_descriptors,
    cohens_d,
    d_interval,
    monotonic,
    real_groups,
    rises,
    trend,
)

SR = 44100
DECAY_808 = Contrast("808 kick", "acoustic kick", "kick", "kick", "decay", "keyword", "808", "acoustic")


def _decaying(tau: float, n: int = SR) -> np.ndarray:
    t = np.arange(n) / SR
    return (np.sin(2 * np.pi * 120 * t) * np.exp(-t / tau)).astype(np.float32)


def test_cohens_d_sign_and_size() -> None:
    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    assert cohens_d(a, b) == pytest.approx(-3.0)
    assert cohens_d(b, a) == pytest.approx(3.0)
    assert cohens_d(a[:1], b) is None


def test_the_interval_of_d_holds_d_and_narrows_with_more_clips() -> None:
    lo, hi = d_interval(1.0, 24, 24)
    assert lo < 1.0 < hi and hi - 1.0 == pytest.approx(1.0 - lo)
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(48 / 576 + 1 / 96))  # se^2 = (na+nb)/(na nb) + d^2/(2(na+nb))
    lo48, hi48 = d_interval(1.0, 48, 48)
    assert hi48 - lo48 < (hi - lo) / 1.3  # about 1/sqrt(2) as wide
    assert d_interval(None, 24, 24) is None and d_interval(0.5, 1, 24) is None


def test_a_sweep_is_monotonic_when_it_never_falls_and_ends_higher() -> None:
    assert monotonic([-1.1, -0.2, 0.63, 0.63, 0.67])  # a decay at the end of the clip may repeat
    assert monotonic([0.1, 0.2, 0.3])
    assert not monotonic([0.82, 0.76, 0.64, 0.71, 0.98])  # U-shaped
    assert not monotonic([0.5, 0.5, 0.5])  # flat: the knob does nothing
    assert not monotonic([0.9, 0.8, 0.7])


def test_a_sweeps_trend_tells_a_real_fall_from_a_dip_within_the_noise() -> None:
    rng = np.random.default_rng(0)
    values = (0.1, 0.3, 0.5, 0.7, 0.9)
    rising = [rng.normal(v, 0.05, 48) for v in values]
    out = trend(values, rising)
    assert out["spearman"] > 0.9 and out["falls"] == []
    # the last step falls by a little against a wide spread: a fall of the median, but not a sure one
    noisy = [rng.normal(m, 1.0, 48) for m in (0.0, 1.0, 2.0, 3.0, 2.95)]
    noisy[4] += np.median(noisy[3]) - 0.02 - np.median(noisy[4])  # the median dips 0.02
    dip = trend(values, noisy)
    assert [(f["from"], f["to"]) for f in dip["falls"]] == [(0.7, 0.9)] and dip["falls"][0]["p"] > 0.2
    # a clear fall at the same step
    clear = [*noisy[:4], noisy[3] - 2.0]
    assert trend(values, clear)["falls"][0]["p"] < 1e-6
    assert trend(values, [np.ones(4)] * 5)["spearman"] is None  # a constant feature has no rank correlation


def test_a_sweep_rises_when_it_ends_surely_higher_and_no_step_falls_surely() -> None:
    rng = np.random.default_rng(1)
    values = (0.1, 0.3, 0.5, 0.7, 0.9)
    rising = trend(values, [rng.normal(v, 0.05, 48) for v in values])
    assert rising["rise_p"] < 1e-10 and rises(rising)
    # a dip of the median within the noise, as a knob saturating at its top: not monotonic, but it rises
    noisy = [rng.normal(m, 1.0, 48) for m in (0.0, 1.0, 2.0, 3.0, 3.0)]
    noisy[4] += np.median(noisy[3]) - 0.001 - np.median(noisy[4])
    dip = trend(values, noisy)
    assert not monotonic([float(np.median(f)) for f in noisy]) and rises(dip)
    # a sure fall at one step fails it, though it ends higher
    fall = trend(values, [*noisy[:3], noisy[2] - 3.0, noisy[4]])
    assert fall["rise_p"] < ALPHA and not rises(fall)
    # flat, or ending higher by less than the noise: the knob does nothing sure
    flat = trend(values, [rng.normal(0.0, 1.0, 48) + 0.01 * i for i in range(5)])
    assert flat["rise_p"] > ALPHA and not rises(flat)


def test_real_groups_by_keyword_by_knob_and_by_class() -> None:
    wavs = np.stack([_decaying(t) for t in (0.02, 0.03, 0.3, 0.4, 0.05, 0.06)])
    cats = ["kick", "kick", "kick", "kick", "snare", "snare"]
    words = [("kick", "acoustic"), ("kick", "acoustic"), ("kick", "808"), ("kick", "808"), ("snare",), ("snare",)]
    a, b = real_groups(DECAY_808, wavs, cats, words, SR)
    assert len(a) == len(b) == 2 and a.min() > b.max()
    long_short = next(c for c in CONTRASTS if c.a == "long kick")
    a, b = real_groups(long_short, wavs, cats, words, SR)
    assert a.min() > b.max()
    by_class = Contrast("kick", "snare", "kick", "snare", "decay", "class")
    a, b = real_groups(by_class, wavs, cats, words, SR)
    assert (len(a), len(b)) == (4, 2)


def test_contrasts_measure_with_the_models_own_feature_version() -> None:
    """Version 1 weight (share below 120 Hz) and version 2 (the body's pitch) order a 50-Hz and a 90-Hz kick
    body alike, but in other units; a model's timbre.json names its version (none: 1)."""
    from types import SimpleNamespace

    from sampleforge.eval.descriptors import model_features

    t = np.arange(SR) / SR
    low, high = (np.sin(2 * np.pi * f * t) * np.exp(-t / 0.2) for f in (50, 90))
    wavs = np.stack([low, low, high, high]).astype(np.float32)
    weight = Contrast("808 kick", "acoustic kick", "kick", "kick", "weight", "keyword", "808", "acoustic")
    words = [("kick", "808")] * 2 + [("kick", "acoustic")] * 2
    a1, b1 = real_groups(weight, wavs, ["kick"] * 4, words, SR)
    a2, b2 = real_groups(weight, wavs, ["kick"] * 4, words, SR, features=2)
    assert a1.max() <= 1.0 and a2.min() > 1.0  # a share, then octaves below 250 Hz
    assert a1.mean() >= b1.mean() and a2.mean() > b2.mean() + 0.5
    assert model_features(SimpleNamespace(bundle=SimpleNamespace(timbre={}))) == 1
    assert model_features(SimpleNamespace(bundle=SimpleNamespace(timbre={"features": 2}))) == 2


def test_the_required_contrasts_are_there() -> None:
    names = {c.name for c in CONTRASTS}
    assert len(CONTRASTS) == 10
    for required in ("808 kick vs acoustic kick", "long kick vs short kick", "bright snare vs dark snare",
                     "low tom vs high tom", "open hat vs closed hat"):
        assert required in names


def test_check_runs_on_the_debug_model(debug_model) -> None:
    from sampleforge.eval.classifier import load_classifier
    from sampleforge.pipeline import Generator

    gen = Generator.from_pretrained(debug_model, device="cpu")
    wavs = np.stack([_decaying(t) for t in (0.02, 0.03, 0.3, 0.4)])
    result = check_descriptors(gen, load_classifier(), wavs, ["kick"] * 4, [("kick", "808"), ("kick", "808"),
                               ("kick", "acoustic"), ("kick", "acoustic")], n=2, steps=1, contrasts=[DECAY_808, CONTRASTS[1]])
    assert result["total"] == 2 and len(result["contrasts"]) == 2
    first = result["contrasts"][0]
    assert first["real_n"] == [2, 2] and first["real_d"] < 0  # these 808s decay faster: the real sign is kept
    assert 0 <= first["adherence"][0] <= 1 and isinstance(first["passed"], bool)
    if first["d"] is not None:
        assert first["d_interval"][0] < first["d"] < first["d_interval"][1]
    assert result["sweeps"] == []  # the debug model has no knobs


def test_the_command_takes_the_generation_settings(debug_model, tmp_path, capsys) -> None:
    import json

    import soundfile as sf

    from sampleforge.cli import main

    kit = tmp_path / "kit"
    kit.mkdir()
    for i, tau in enumerate((0.02, 0.03, 0.3, 0.4)):
        sf.write(kit / f"kick_{'808' if i < 2 else 'acoustic'}_{i}.wav", _decaying(tau), SR)
    (kit / "kick_tiny.wav").write_bytes(b"")  # unreadable: skipped by the scan
    sf.write(kit / "kick_3samples.wav", np.array([0.0, 0.5, -0.25], np.float32), SR)  # shorter than the pre-roll
    assert main(["eval", "descriptors", "--model", str(debug_model), "--reference", str(tmp_path / "none")]) == 2
    assert "--reference: " + str(tmp_path / "none") + " is not a folder" in capsys.readouterr().err
    assert main(["eval", "descriptors", "--model", str(debug_model), "--reference", str(kit), "--cfg-scale", "99"]) == 2
    assert "--cfg-scale must be a finite number between 0 and 30" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(["eval", "descriptors", "--model", str(debug_model), "--reference", str(kit), "-n", "2",
                 "--steps", "1", "--cfg-scale", "4.5", "--out", str(out)]) == 0
    settings = json.loads((out / "descriptors.json").read_text())["settings"]
    assert settings["cfg_scale"] == 4.5 and settings["steps"] == 1 and settings["sampler"] == "dpmpp_2m"
    own = tmp_path / "own-guidance"  # without --cfg-scale, the model's own guidance
    shutil.copytree(debug_model, own)
    config = json.loads((own / "config.json").read_text())
    config["diffusion"]["cfg_scale"] = 2.5
    (own / "config.json").write_text(json.dumps(config))
    assert main(["eval", "descriptors", "--model", str(own), "--reference", str(kit), "-n", "2", "--steps", "1",
                 "--out", str(out)]) == 0
    result = json.loads((out / "descriptors.json").read_text())
    assert result["settings"]["cfg_scale"] == 2.5 and all(r["cfg_scale"] == [2.5, 2.5] for r in result["contrasts"])


def test_the_command_prints_each_sweeps_verdict_by_its_p_values(debug_model, tmp_path, capsys, monkeypatch) -> None:
    """A sweep whose median dips within the noise passes and says so; one that falls surely is a FAIL."""
    import soundfile as sf

    from sampleforge.cli import main
    from sampleforge.eval import descriptors

    rng = np.random.default_rng(2)
    dip = [rng.normal(m, 1.0, 48) for m in (0.0, 1.0, 2.0, 3.0, 3.0)]
    dip[4] += np.median(dip[3]) - 0.001 - np.median(dip[4])
    falling = [*dip[:3], dip[2] - 3.0, dip[4]]

    def fake(*args, **kwargs):
        sweeps = []
        for knob, feats in (("decay", dip), ("weight", falling)):
            how = descriptors.trend(descriptors.SWEEP_VALUES, feats)
            medians = [float(np.median(f)) for f in feats]
            sweeps.append({"class": "kick", "knob": knob, "medians": medians, "rises": descriptors.rises(how),
                           "monotonic": descriptors.monotonic(medians), **how})
        return {"contrasts": [], "passed": 0, "total": 0, "sweeps": sweeps,
                "sweeps_rising": sum(w["rises"] for w in sweeps), "alpha": descriptors.ALPHA}

    monkeypatch.setattr(descriptors, "check_descriptors", fake)
    kit = tmp_path / "kit"
    kit.mkdir()
    sf.write(kit / "kick_1.wav", _decaying(0.1), SR)
    assert main(["eval", "descriptors", "--model", str(debug_model), "--reference", str(kit),
                 "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    decay = next(line for line in lines if "sweep kick decay" in line)
    weight = next(line for line in lines if "sweep kick weight" in line)
    assert decay.split()[0] == "pass" and "falls 0.7->0.9" in decay and "rise p" in decay
    assert weight.split()[0] == "FAIL" and "falls 0.5->0.7 (p " in weight
    assert "1/2 knob sweeps rise (p < 0.05, no step falling surely; 0 with every median rising)" in lines[-2]


def test_the_holding_range_reaches_into_the_first_failing_step() -> None:
    from sampleforge.eval.descriptors import LIMIT_VALUES, holding_range

    values = list(LIMIT_VALUES)  # 0.05 0.1 0.2 0.3 0.5 0.7 0.8 0.9 0.95
    assert holding_range(values, [1.0] * 9, 0.9) == (0.0, 1.0)  # held to the ends measured: open to 0 and 1
    # bright snares: 0.93 at 0.7, 0.85 at 0.8 -> the line crosses 0.9 three eighths into that step
    assert holding_range(values, [1, 1, 1, 1, 1, 0.93, 0.85, 0.5, 0.4], 0.9) == (0.0, 0.74)
    assert holding_range(values, [0.5, 0.95, 1, 1, 1, 1, 1, 1, 1], 0.9) == (0.09, 1.0)
    # a dip beyond a failing value does not count: the range stops at the first failure on each side
    assert holding_range(values, [1, 1, 0.8, 1, 1, 1, 0.8, 1, 1], 0.9) == (0.25, 0.75)
    # the middle below the bar: the range is the middle alone
    assert holding_range([0.1, 0.5, 0.9], [0.7, 0.6, 0.7], 0.75) == (0.5, 0.5)
    # with the clip count, a share below the bar fails only when it is surely below the middle's: 42 of 48
    # against 46 is noise (the range goes on), 40 against 48 is not
    noisy = [1, 1, 1, 42 / 48, 46 / 48, 1, 1, 40 / 48, 40 / 48]
    assert holding_range(values, noisy, 0.9, n=48) == (0.0, 0.86)  # 1.0 at 0.8, 0.83 at 0.9: crossing at 0.86
    assert holding_range(values, noisy, 0.9) == (0.36, 0.86)  # without it, every share below the bar fails


def test_limits_are_drawn_where_the_judge_knows_the_class_at_the_middle() -> None:
    from sampleforge.eval.descriptors import LIMIT_VALUES, limits_from_judged

    judged = {"snare": {"brightness": [1, 1, 1, 1, 0.92, 0.9, 0.86, 0.5, 0.5], "decay": [1.0] * 9},
              "perc": {"decay": [0, 0, 0.02, 0.19, 0.83, 0.56, 0.23, 0.04, 0.06]}}
    limits, bars, unlimited = limits_from_judged(LIMIT_VALUES, judged, 48)
    # the middle at 0.92: the bar is 0.87; 0.86 at 0.8 is below it but within the noise of 48 clips, so the
    # range holds to 0.8, and 0.5 at 0.9 fails
    assert bars["snare"]["brightness"] == 0.87 and limits["snare"]["brightness"] == [0.0, 0.8]
    assert limits["snare"]["decay"] == [0.0, 1.0]
    assert unlimited == ["perc.decay"] and "perc" not in limits  # judged a perc 83 % at the middle: no evidence
