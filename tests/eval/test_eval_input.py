"""Bad input to `sampleforge eval ...`, `sweep` and `doctor`: one line naming the flag, before any slow work, and
nothing of the user's replaced."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from sampleforge.cli import main
from tests.eval.test_classifier import _two_kits
from tests.model_folders import vocoder_folder


def _one_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err
    return err


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: the command must refuse before it."""
    import sampleforge.backends as backends
    from sampleforge.pipeline import Generator

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(Generator, "from_pretrained", refuse)
    monkeypatch.setattr(backends, "load_backend", refuse)


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    import sampleforge.eval.classifier_train as ct

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the classifier was trained before the input was checked")

    monkeypatch.setattr(ct, "fit", refuse)


TRAIN = ["eval", "train-classifier", "--held-out", "held", "--epochs", "1", "--samples-per-epoch", "8"]


def test_train_classifier_refuses_a_folder_it_did_not_write(
        reference_dir: Path, debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        no_training: None) -> None:
    data = _two_kits(reference_dir, tmp_path / "data")
    model = shutil.copytree(debug_model, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    assert main([*TRAIN, "--data", str(data), "--out", str(model)]) == 2
    _one_line(capsys, "--out", "did not write")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before  # the model folder is untouched
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.md").write_text("# my notes\n")
    assert main([*TRAIN, "--data", str(data), "--out", str(notes)]) == 2
    _one_line(capsys, "--out", "README.md")
    assert (notes / "README.md").read_text() == "# my notes\n"
    assert main([*TRAIN, "--data", str(data), "--out", str(notes / "README.md" / "x")]) == 2
    _one_line(capsys, "--out", "is a file, not a folder")


def test_train_classifier_replaces_an_earlier_classifier(
        reference_dir: Path, random_classifier: Path, tmp_path: Path) -> None:
    data = _two_kits(reference_dir, tmp_path / "data")
    earlier = shutil.copytree(random_classifier, tmp_path / "judge")
    assert main([*TRAIN, "--data", str(data), "--out", str(earlier)]) == 0
    assert (earlier / "README.md").read_text().startswith("# judge: drum one-shot classifier")


def test_train_classifier_checks_compare_and_cv_folds_before_training(
        reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_training: None) -> None:
    data = _two_kits(reference_dir, tmp_path / "data")
    out = ["--data", str(data), "--out", str(tmp_path / "judge")]
    assert main([*TRAIN, *out, "--compare", str(tmp_path / "nowhere")]) == 2
    _one_line(capsys, "nowhere")
    assert main([*TRAIN, *out, "--cv-folds", "5"]) == 2  # two kits
    _one_line(capsys, "--cv-folds 5", "only 2 kits")
    assert main([*TRAIN, *out, "--cv-folds", "-1"]) == 2
    _one_line(capsys, "--cv-folds")


def test_eval_vocoder_replaces_only_its_earlier_report(
        debug_model: Path, reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLEFORGE_CACHE", str(tmp_path / "cache"))
    sample = next(reference_dir.glob("kick_*.wav"))
    mine = shutil.copy(sample, tmp_path / "my_kick.wav")
    common = ["eval", "vocoder", "--model", str(debug_model), "--reference", str(reference_dir), "--clips", "2",
              "--listen", "0", "--device", "cpu", "--out"]
    assert main([*common, str(mine)]) == 2
    _one_line(capsys, "--out")
    assert Path(mine).read_bytes() == sample.read_bytes()
    (tmp_path / "notes.json").write_text('{"mine": 1}\n')
    (tmp_path / "page.html").write_text("my page\n")
    for out in ("notes.json", "page.json"):  # the JSON file, then the page beside it
        assert main([*common, str(tmp_path / out)]) == 2
        _one_line(capsys, "--out", "not replaced")
    assert (tmp_path / "notes.json").read_text() == '{"mine": 1}\n' and (tmp_path / "page.html").read_text() == "my page\n"
    report = tmp_path / "v" / "vocoder.json"
    assert main([*common, str(report)]) == 0
    assert main([*common, str(report)]) == 0  # an earlier report of its own is replaced
    assert main([*common, str(tmp_path)]) == 2  # a folder
    _one_line(capsys, "--out")


@pytest.mark.parametrize("command", [
    ["candidates", "--entries", "snare:808"], ["knob-limits"], ["word-reach"], ["pair-reach"], ["keyword-reach"]])
def test_eval_measurements_refuse_a_file_not_their_report_before_loading(
        command: list[str], knob_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        no_loading: None) -> None:
    (tmp_path / "mine.json").write_text('{"mine": 1}\n')
    (tmp_path / "afile").write_text("mine\n")
    for out, words in (("mine.json", ("--out", "not replaced")), ("my_kick.wav", ("--out", ".json")),
                       ("afile/x.json", ("--out", "is a file, not a folder"))):
        assert main(["eval", *command, "--model", str(knob_model), "--out", str(tmp_path / out)]) == 2
        _one_line(capsys, *words)
    assert (tmp_path / "mine.json").read_text() == '{"mine": 1}\n' and (tmp_path / "afile").read_text() == "mine\n"


def test_knob_limits_replaces_its_earlier_report(knob_model: Path, tmp_path: Path) -> None:
    from sampleforge.eval.report import check_report_file

    earlier = tmp_path / "limits.json"
    earlier.write_text(json.dumps({"knob_limits": {}, "judged": {}}))
    assert check_report_file(earlier, "--out", "eval knob-limits", ("knob_limits",)) == earlier
    other_kind = tmp_path / "reach.json"
    other_kind.write_text(json.dumps({"word_reach": {}}))
    with pytest.raises(ValueError, match="not an earlier eval knob-limits report"):
        check_report_file(other_kind, "--out", "eval knob-limits", ("knob_limits",))


def test_report_folders_replace_only_earlier_reports(
        debug_model: Path, reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        no_loading: None) -> None:
    user = tmp_path / "user"
    user.mkdir()
    for name in ("sweep.html", "sweep.json", "eval.html", "descriptors.json"):
        (user / name).write_text("my notes\n")
    sweep = ["sweep", "--model", str(debug_model), "--prompt", "kick", "--steps", "1", "--cfg-scale", "1",
             "--sampler", "ddim", "--out", str(user)]
    assert main(sweep) == 2
    _one_line(capsys, "--out", "sweep.json", "not replaced")
    assert main(["eval", "--model", str(debug_model), "--reference", str(reference_dir), "--out", str(user)]) == 2
    _one_line(capsys, "--out", "eval.html", "not replaced")
    assert main(["eval", "descriptors", "--model", str(debug_model), "--reference", str(reference_dir),
                 "--out", str(user)]) == 2
    _one_line(capsys, "--out", "descriptors.json", "not replaced")
    assert all((user / name).read_text() == "my notes\n" for name in ("sweep.html", "sweep.json", "eval.html"))


def test_sweep_writes_beside_a_probe_wav_and_replaces_its_earlier_sweep(
        debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    out.mkdir()
    (out / "probe.wav").write_text("the user's file\n")  # not a file sweep writes
    sweep = ["sweep", "--model", str(debug_model), "--prompt", "kick", "--steps", "1", "--cfg-scale", "1",
             "--sampler", "ddim", "--out", str(out)]
    assert main(sweep) == 0
    assert main(sweep) == 0
    assert '<meta name="generator" content="sampleforge">' in (out / "sweep.html").read_text()
    assert (out / "probe.wav").read_text() == "the user's file\n"


def test_sweep_says_the_prompt_warnings_and_renders_each_cell_once(
        debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    assert main(["sweep", "--model", str(debug_model), "--prompt", "kikc", "--steps", "1,1", "--cfg-scale", "1,1.0",
                 "--sampler", "ddim,ddim", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: unknown keyword 'kikc'" in err
    res = json.loads((out / "sweep.json").read_text())
    assert len(res["cells"]) == 1 and res["samplers"] == ["ddim"]
    assert "unknown keyword" in (out / "sweep.html").read_text()


def test_sweep_counts_the_default_samplers_before_loading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], no_loading: None) -> None:
    many = ",".join(str(i) for i in range(1, 23))  # 22 scales x 1 step x 3 samplers = 66 cells
    assert main(["sweep", "kick", "--cfg-scale", many, "--steps", "1", "--out", str(tmp_path / "sw")]) == 2
    _one_line(capsys, "66 cells")


def test_eval_refuses_held_out_kits_not_in_the_reference(
        debug_model: Path, reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        no_loading: None) -> None:
    data = _two_kits(reference_dir, tmp_path / "data")
    common = ["--model", str(debug_model), "--reference", str(data)]
    assert main(["eval", *common, "--held-out-kits", "helt", "--out", str(tmp_path / "e")]) == 2
    _one_line(capsys, "--held-out-kits", "'helt'", "'held', 'train'")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"data": {"held_out_kits": ["SomeKit"]}}))
    assert main(["eval", *common, "--config", str(recipe), "--out", str(tmp_path / "e")]) == 2
    _one_line(capsys, "--config", "'SomeKit'")
    assert main(["eval", *common, "--config", str(recipe), "--held-out-kits", "held"]) == 2
    _one_line(capsys, "--held-out-kits or by --config")
    assert main(["eval", "vocoder", *common, "--held-out-kits", "NoSuch", "--out", str(tmp_path / "v.json")]) == 2
    _one_line(capsys, "--held-out-kits", "'NoSuch'")


def test_eval_refuses_another_formats_model_before_loading(
        reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_loading: None) -> None:
    adp = tmp_path / "tiny-drums.ckpt"  # an audio-diffusion-pytorch checkpoint by its name (refused unread)
    adp.write_bytes(b"never read")
    common = ["--model", str(adp), "--reference", str(reference_dir)]
    for command in (["eval", *common, "--out", str(tmp_path / "e")],
                    ["eval", "descriptors", *common, "--out", str(tmp_path / "d")],
                    ["eval", "vocoder", *common, "--out", str(tmp_path / "v.json")]):
        assert main(command) == 2
        _one_line(capsys, f"--model {adp}", "sampleforge models")


def test_a_corrupt_classifier_is_one_line_and_doctor_says_so(
        random_classifier: Path, tmp_path: Path) -> None:
    from sampleforge.errors import CheckpointError
    from sampleforge.eval.classifier import load_classifier
    from sampleforge.eval.doctor import check_classifier

    broken = shutil.copytree(random_classifier, tmp_path / "broken")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_classifier(broken)
    check = check_classifier(broken)
    assert check.status == "fail" and "not a readable safetensors file" in check.detail
    assert check_classifier(random_classifier).status == "ok"


def test_eval_vocoder_refuses_a_negative_seed(debug_model: Path, reference_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "vocoder", "--model", str(debug_model), "--reference", str(reference_dir),
                 "--seed", "-1"]) == 2
    _one_line(capsys, "--seed")


def test_shipped_vocoder_and_classifier_names_are_found(
        debug_model: Path, reference_dir: Path, random_classifier: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "weights"
    vocoder_folder(debug_model, weights / "a-vocoder")
    shutil.copytree(random_classifier, weights / "judge-z")
    monkeypatch.setenv("SAMPLEFORGE_WEIGHTS", str(weights))
    monkeypatch.setenv("SAMPLEFORGE_CACHE", str(tmp_path / "cache"))
    assert main(["eval", "vocoder", "--model", str(debug_model), "--reference", str(reference_dir), "--clips", "2",
                 "--listen", "0", "--vocoder", "a-vocoder", "--out", str(tmp_path / "v.json")]) == 0
    data = _two_kits(reference_dir, tmp_path / "data")
    assert main(["eval", "score-classifier", "--classifier", "judge-z", "--data", str(data),
                 "--held-out", "held"]) == 0


def test_unknown_keywords_are_not_measured(knob_model: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "keyword-reach", "--model", str(knob_model), "--classes", "kick", "--words", "zzzz",
                 "-n", "8", "--steps", "1", "--out", str(tmp_path / "k.json")]) == 2
    _one_line(capsys, "--words", "'zzzz' is not a keyword")
    assert main(["eval", "candidates", "--model", str(knob_model), "--entries", "snare:zzzz", "-n", "8",
                 "--steps", "1", "--out", str(tmp_path / "c.json")]) == 2
    _one_line(capsys, "--entries", "'zzzz' is not a keyword")


def test_doctor_names_a_crashed_check_and_warns_of_no_kits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleforge.eval import doctor

    assert doctor.check_data([tmp_path]).status == "warn"  # a folder without kits
    monkeypatch.setenv("OMP_NUM_THREADS", "abc")
    threads = doctor.check_threads()
    assert threads.status == "warn" and "OMP_NUM_THREADS" in threads.fix

    def check_data(dirs: object = None) -> doctor.Check:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doctor, "check_data", check_data)
    (data,) = [c for c in doctor.run_checks(model=str(tmp_path)) if "PermissionError" in c.detail]
    assert data.name == "data" and data.status == "fail" and data.fix


def test_eval_refuses_its_own_flags_before_a_sub_command(debug_model: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--model", str(debug_model), "--out", str(tmp_path / "e"), "descriptors"]) == 2
    _one_line(capsys, "--model before the sub-command descriptors")


def test_eval_refuses_a_list_flag_that_took_a_sub_command(debug_model: Path, reference_dir: Path, tmp_path: Path,
                                                          no_loading: None, capsys: pytest.CaptureFixture[str]) -> None:
    """argparse reads ``--reference A descriptors`` as two folders; eval itself would run on A alone."""
    kits = _two_kits(reference_dir, tmp_path / "kits")
    assert main(["eval", "--model", str(debug_model), "--reference", str(kits), "descriptors"]) == 2
    _one_line(capsys, "--reference took 'descriptors'", "sampleforge eval descriptors --reference")
    assert main(["eval", "--model", str(debug_model), "--reference", str(kits), "--held-out-kits", "k1",
                 "vocoder"]) == 2
    _one_line(capsys, "--held-out-kits took 'vocoder'")


def test_eval_refuses_a_reference_that_is_not_a_folder(debug_model: Path, reference_dir: Path, tmp_path: Path,
                                                       no_loading: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The scan skipped it: the measure ran on the other folders without a word."""
    kits = _two_kits(reference_dir, tmp_path / "kits")
    for command in (["eval"], ["eval", "vocoder"]):
        assert main([*command, "--model", str(debug_model), "--reference", str(kits),
                     str(tmp_path / "typo"), "--out", str(tmp_path / "o" / "v.json")]) == 2
        _one_line(capsys, f"--reference: {tmp_path / 'typo'} is not a folder")


def test_a_refused_eval_makes_no_folder(debug_model: Path, tmp_path: Path, no_loading: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--out is checked before the work, and made only when the report is written."""
    out = tmp_path / "new" / "eval"
    assert main(["eval", "--model", str(debug_model), "--reference", str(tmp_path / "typo"), "--out", str(out)]) == 2
    _one_line(capsys, "is not a folder")
    assert not (tmp_path / "new").exists()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # (root writes anyway)
            assert main(["eval", "--model", str(debug_model), "--reference", str(tmp_path),
                         "--out", str(locked / "a" / "b")]) == 2
            _one_line(capsys, f"--out: cannot write to {locked}")
    finally:
        locked.chmod(0o700)
