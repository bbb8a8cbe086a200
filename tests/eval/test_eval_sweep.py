"""sampleforge eval / sweep / doctor end to end on the debug model, plus the eval helpers."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sampleforge.cli import build_parser, main
from sampleforge.eval.evaluate import class_matched_indices, stratified_halves


def test_eval_end_to_end(debug_model: Path, random_classifier: Path, reference_dir: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLEFORGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    classes = ["kick", "snare", "closed_hat", "clap", "tom"]
    code = main(["eval", "--model", str(debug_model), "--reference", str(reference_dir), "--per-class", "2",
                 "--steps", "2", "--classes", *classes, "--classifier", str(random_classifier),
                 "--vocoder-clips", "2", "--device", "cpu", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "eval.json").read_text())
    assert res["classes"] == classes and res["skipped_classes"] == []
    assert res["reference"]["clips"] == 10 and "no held-out kit" in res["reference"]["split"]
    for cat in classes:
        v = res["per_class"][cat]
        assert 0.0 <= v["adherence"] <= 1.0 and 0.0 <= v["target_probability"] <= 1.0
        assert len(v["lufs"]) == 2 and len(v["onset_ms"]) == 2 and len(v["seeds"]) == 2
        assert sum(v["predicted"].values()) == 2
        assert isinstance(v["nan_count"], int) and v["latent_std"] > 0
        assert v["nearest_train_distance"]["min"] <= v["nearest_train_distance"]["mean"]
    o = res["overall"]
    correct = sum(round(v["adherence"] * 2) for v in res["per_class"].values())
    lo, hi = o["adherence_interval"]  # 95 % Wilson interval over the 10 clips
    assert 0.0 <= lo <= correct / 10 <= hi <= 1.0 and hi - lo > 0.3  # ten clips say little
    for key in ("fd_classifier", "fd_classifier_floor", "fd_mfcc", "fd_mfcc_floor"):
        assert o[key] is not None and o[key] >= 0.0 and math.isfinite(o[key]), key
    assert o["fd_mfcc"] > 0  # random-weight audio is not the reference
    # class-matched: reference has kick 3, snare 3, closed_hat 2, clap 2 (no tom) -> generated 2/2/1/1 (rounded)
    assert o["fd_reference_clips"] == 10 and o["fd_generated_clips"] == 6
    voc = res["vocoder_check"]
    assert voc["clips"] == 2 and voc["griffin_lim_iters"] == 32 and voc["griffin_lim"]["mrstft"] > 0 and voc["griffin_lim"]["logmel_l1"] > 0
    assert voc["real"]["tail_flatness"] is not None and "hop_flutter_db" in voc["griffin_lim"]
    trip = res["roundtrip_check"]  # reference: kick 3, snare 3, closed_hat 2, clap 2 (no tom)
    assert trip["clips"] == 10 and sorted(trip["per_class"]) == ["clap", "closed_hat", "kick", "snare"]
    assert trip["per_class"]["kick"]["clips"] == 3 and sum(trip["per_class"]["kick"]["vae_predicted"].values()) == 3
    assert all(0 <= v["vae"] <= 1 and 0 <= v["vocoder"] <= 1 and v["logmel_l1"] > 0 for v in trip["per_class"].values())
    page = (out / "eval.html").read_text()
    assert "Round trip (10 real clips)" in page
    # players: 5 classes x 2 generated + reference (2 kick, 2 snare, 2 closed_hat, 2 clap, 0 tom) + 2 x 3 vocoder
    assert page.count("<audio") == 10 + 8 + 6
    assert sum(v["clips"] for v in voc["per_class"].values()) == 2
    assert "MR-STFT Griffin-Lim" in page  # the by-class table: class, then its clip count
    assert all(f'<td class="l">{c}</td><td class="">{v["clips"]}</td>' in page for c, v in voc["per_class"].items())
    assert "Vocoder check" in page and "real-vs-real floor" in page and "95 % interval (chance alone)" in page
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 10  # reference clips went through the cache


def test_eval_vocoder_alone(debug_model: Path, reference_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "voc.json"
    code = main(["eval", "vocoder", "--model", str(debug_model), "--reference", str(reference_dir), "--clips", "3",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["clips"] == 3 and "reference = all clips" in res["split"]
    for row in ("vocoder", "griffin_lim"):
        assert res[row]["mrstft"] > 0 and res[row]["logmel_l1"] > 0 and res[row]["mr_logmel_l1"] > 0
        assert set(res[row]) >= {"tail_flatness", "hop_flutter_db", "hf_peakiness_db"}
    assert 0 < res["real"]["tail_flatness"] < 1
    per_class = res["per_class"]
    assert sum(v["clips"] for v in per_class.values()) == 3
    for v in per_class.values():
        assert v["griffin_lim"]["mrstft"] > 0 and v["vocoder"]["mr_logmel_l1"] > 0
    text = capsys.readouterr().out
    assert "Griffin-Lim: 32 iterations from the " in text and "matching the mel" not in text
    assert "MR-STFT by class (clips): " in text
    assert "model vocoder" in text and "Griffin-Lim's" in text and "MR mel L1: the vocoder is" in text
    assert f"wrote {out} and {out.with_suffix('.html')}" in text
    page = out.with_suffix(".html").read_text()
    assert "Listening test (3 clips, blind)" in page and page.count('<tr class="trial"') == 3
    assert page.count("<audio") == 3 * 3 and page.count("<img") == 3 * 3  # the test's players; labelled pictures
    assert "Vocoder check (3 real clips" in page and "MR-STFT Griffin-Lim" in page
    assert main(["eval", "vocoder", "--model", str(debug_model), "--reference", str(reference_dir), "--clips", "3",
                 "--listen", "0", "--out", str(tmp_path / "tables.json")]) == 0
    tables = (tmp_path / "tables.html").read_text()
    assert "Listening test" not in tables and "<audio" not in tables and "Vocoder check (3 real clips" in tables
    capsys.readouterr()
    base = ["eval", "vocoder", "--model", str(debug_model), "--reference", str(reference_dir)]
    assert main([*base, "--clips", "0"]) == 2
    assert "--clips must be >= 1" in capsys.readouterr().err
    assert main([*base, "--listen", "-1"]) == 2
    assert "argument --listen: must be at least 0, got -1" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "page.html")]) == 2
    assert "is the JSON file" in capsys.readouterr().err
    assert main(["eval", "vocoder", "--model", f"{debug_model}+griffin-lim", "--vocoder", str(debug_model),
                 "--reference", str(reference_dir)]) == 2  # MODEL+VOCODER names one already
    assert "and --vocoder contradict each other" in capsys.readouterr().err


def test_eval_vocoder_checks_another_folders_vocoder_on_the_model(debug_model: Path, model_without_vocoder: Path,
                                                                   reference_dir: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``--vocoder``: a model without a vocoder (as drums-v2 ships) checked with one from another folder (a
    vocoder training run's model/) gives that vocoder's numbers, in one command."""
    base = model_without_vocoder
    args = ["eval", "vocoder", "--reference", str(reference_dir), "--clips", "3", "--device", "cpu"]
    assert main([*args, "--model", str(debug_model), "--out", str(tmp_path / "own.json")]) == 0
    assert main([*args, "--model", str(base), "--out", str(tmp_path / "alone.json")]) == 0
    assert main([*args, "--model", str(base), "--vocoder", str(debug_model), "--out", str(tmp_path / "with.json")]) == 0
    own, alone, spliced = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("own", "alone", "with"))
    assert alone["vocoder"] is None
    assert spliced["vocoder"] == own["vocoder"] and spliced["vocoder_weights"] == str(debug_model)
    capsys.readouterr()
    assert main([*args, "--model", str(base), "--vocoder", str(tmp_path / "nothing")]) == 2
    assert "--vocoder: " in capsys.readouterr().err


def test_eval_vocoder_says_how_griffin_lim_runs(debug_model: Path, reference_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from tests.model_folders import edited_copy

    def edit(c: dict) -> None:
        c["griffin_lim"].update(n_iter=4, init="onset", mel_iters=2)
        c["vocoder"].update(refine_iters=3, refine_start="random")

    model = edited_copy(debug_model, tmp_path / "m", edit)
    out = tmp_path / "voc.json"
    assert main(["eval", "vocoder", "--model", str(model), "--reference", str(reference_dir), "--clips", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Griffin-Lim: 4 iterations from the onset start, the last 2 matching the mel" in printed
    assert "M parameters), the magnitude of Griffin-Lim: 3 iterations from the random start\n" in printed
    res = json.loads(out.read_text())
    assert (res["griffin_lim_iters"], res["griffin_lim_mel_iters"], res["griffin_lim_init"]) == (4, 2, "onset")
    assert res["vocoder_description"].startswith("istft network (")


def test_eval_needs_model_and_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--per-class", "2"]) == 2
    assert "--model and --reference are required" in capsys.readouterr().err


def test_eval_train_classifier_is_a_subcommand(monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleforge.eval import classifier_train

    ran: list[object] = []
    monkeypatch.setattr(classifier_train, "run", lambda args: ran.append(args) or 0)
    args = build_parser().parse_args(["eval", "train-classifier", "--epochs", "1", "--cv-folds", "3"])
    assert args.func(args) == 0 and ran == [args]
    assert args.epochs == 1 and args.cv_folds == 3
    assert args.out == Path("runs") / "classifier"  # a bare run never overwrites the shipped judge


def test_sweep_end_to_end(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", str(debug_model), "--prompt", "punchy kick", "--cfg", "1,4", "--steps", "1,2",
                 "--sampler", "ddim,euler", "--seed", "3", "--device", "cpu", "--out", str(out)])
    assert code == 0
    res = json.loads((out / "sweep.json").read_text())
    cells = res["cells"]
    assert len(cells) == 8
    assert Counter(c["sampler"] for c in cells) == {"ddim": 4, "euler": 4}
    assert {(c["steps"], c["cfg_scale"]) for c in cells} == {(1, 1.0), (1, 4.0), (2, 1.0), (2, 4.0)}
    for c in cells:
        assert c["seeds"] == [3] and c["raw_audio_std"] >= 0 and 0 <= c["raw_clipping_percent"] <= 100
    # the grid really varies the settings (the debug U-Net ignores its condition, so cfg cannot show here)
    ddim = {c["steps"]: c["latent_std"] for c in cells if c["sampler"] == "ddim" and c["cfg_scale"] == 1.0}
    assert ddim[1] != pytest.approx(ddim[2], rel=1e-3)
    page = (out / "sweep.html").read_text()
    assert page.count("<audio") == 8 and page.count("data:image/png") == 8
    assert "latent std" in capsys.readouterr().out


def test_sweep_takes_the_prompt_as_words(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`sampleforge sweep punchy kick ...` as `--prompt "punchy kick"`; no prompt at all is a one-line error."""
    out = tmp_path / "sweep"
    assert main(["sweep", "punchy", "kick", "--model", str(debug_model), "--cfg-scale", "1", "--steps", "1",
                 "--sampler", "ddim", "--out", str(out)]) == 0
    assert json.loads((out / "sweep.json").read_text())["prompt"] == "punchy kick"
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # without --out: a folder per model and prompt, so two models do not share one
    assert main(["sweep", "punchy", "kick", "--model", str(debug_model), "--cfg-scale", "1", "--steps", "1",
                 "--sampler", "ddim"]) == 0
    folder = tmp_path / "runs" / "sweep" / debug_model.name.lower().replace("-", "_")
    assert (folder / "punchy_kick" / "sweep.json").is_file()
    capsys.readouterr()
    assert main(["sweep", "PUNCHY", "kick!", "--model", str(debug_model), "--cfg-scale", "1", "--steps", "1",
                 "--sampler", "ddim"]) == 0  # another prompt: its own folder, the first sweep's report kept
    (other,) = [f for f in folder.iterdir() if f.name != "punchy_kick"]
    assert other.name.startswith("punchy_kick_") and json.loads((other / "sweep.json").read_text())["prompt"] == \
        "PUNCHY kick!"
    assert json.loads((folder / "punchy_kick" / "sweep.json").read_text())["prompt"] == "punchy kick"
    capsys.readouterr()
    assert main(["sweep", "--model", str(debug_model), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prompt" in err[0]


def test_sweep_rejects_bad_lists(debug_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--model", str(debug_model), "--prompt", "kick", "--cfg", "1,x"]) == 2
    assert "--cfg" in capsys.readouterr().err
    assert main(["sweep", "--model", str(debug_model), "--prompt", "kick", "--sampler", "nope", "--steps", "1"]) == 2
    assert "--sampler must be one of" in capsys.readouterr().err


def test_sweep_refuses_a_folder_it_cannot_write_before_rendering(debug_model: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sampleforge.eval.sweep as sweep_module

    def no_rendering(*args: object, **kwargs: object) -> None:
        raise AssertionError("the grid was rendered before the folder was checked")

    monkeypatch.setattr(sweep_module, "run_sweep", no_rendering)
    (tmp_path / "notes.txt").write_text("mine")
    for out in ("notes.txt", "notes.txt/sweep"):
        assert main(["sweep", "--model", str(debug_model), "--prompt", "kick", "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_sweep_refuses_a_grid_too_large_for_its_page_before_loading(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import sampleforge.backends as backends
    from sampleforge.eval.sweep import MAX_CELLS, MAX_CLIPS

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the grid was checked")

    monkeypatch.setattr(backends, "load_backend", no_loading)
    many = ",".join(f"{i / 4:g}" for i in range(1, MAX_CELLS + 2))  # one more cell than a page takes
    assert main(["sweep", "kick", "--cfg-scale", many, "--steps", "1", "--sampler", "ddim", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{MAX_CELLS + 1} cells" in err and f"at most {MAX_CELLS}" in err and len(err.strip().splitlines()) == 1
    count = MAX_CLIPS // 4 + 1  # four cells of that many clips is over the page's clips
    assert main(["sweep", "kick", "--cfg-scale", "1,2", "--steps", "1,2", "--sampler", "ddim", "--count", str(count),
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"4 cells x {count} clips" in err and "--count" in err
    assert not any(tmp_path.iterdir())


def test_doctor_cli(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor", "--model", str(debug_model), "--data", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "[ok  ] model" in out and "torch 2." in out
    assert main(["doctor", "--json", "--model", str(tmp_path / "none")]) == 1
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert checks["model"]["status"] == "fail" and checks["model"]["fix"]


def test_stratified_halves_and_class_matching() -> None:
    labels = ["a"] * 5 + ["b"] * 4 + ["c"]
    h1, h2 = stratified_halves(labels)
    assert sorted(np.concatenate([h1, h2]).tolist()) == list(range(10))
    assert abs(len(h1) - len(h2)) <= 1
    assert Counter(labels[i] for i in h1)["b"] == 2
    gen = ["a"] * 4 + ["b"] * 4 + ["d"] * 4
    sel = class_matched_indices(gen, Counter({"a": 10, "b": 5, "c": 3}))
    assert Counter(gen[i] for i in sel) == {"a": 4, "b": 2}


def test_eval_takes_the_reference_kits_from_a_recipe(debug_model: Path, reference_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"data": {"held_out_kits": []}}))
    common = ["eval", "--model", str(debug_model), "--reference", str(reference_dir), "--config", str(recipe)]
    assert main(common) == 2
    assert "holds out no kit" in capsys.readouterr().err
    recipe.write_text(json.dumps({"data": {"held_out_kits": ["SomeKit"]}}))
    assert main([*common, "--held-out-kits", "OtherKit"]) == 2
    assert "not both" in capsys.readouterr().err


def test_sweep_lists_take_several_values(debug_model: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`--cfg-scale 1 4` is `--cfg-scale 1,4` (the 4 was taken as the prompt); a word there that is no value is a
    one-line error naming the flag."""
    out = tmp_path / "sweep"
    assert main(["sweep", "kick", "--model", str(debug_model), "--cfg-scale", "1", "4", "--steps", "1",
                 "--sampler", "ddim", "--out", str(out)]) == 0
    res = json.loads((out / "sweep.json").read_text())
    assert res["prompt"] == "kick" and {c["cfg_scale"] for c in res["cells"]} == {1.0, 4.0}
    capsys.readouterr()
    assert main(["sweep", "--model", str(debug_model), "--cfg-scale", "1", "4", "kick", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cfg-scale" in err[0] and "'kick'" in err[0]
