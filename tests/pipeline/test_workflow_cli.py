"""`sampleforge generate --length/--format`, `vary`, `morph` and `kit` as a user runs them, and the Python API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import sampleforge
from sampleforge.audio.io import read_metadata
from sampleforge.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out.split(), err


@pytest.fixture(scope="module")
def snare_file(debug_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("in") / "my_snare.wav"
    main(["generate", "--model", str(debug_model), "--prompt", "snare", "--steps", "2", "--seed", "3",
          "--output", str(out), "--quiet"])
    return out


def test_generate_length_auto_and_wav16(debug_model: Path, tmp_path: Path, capsys) -> None:
    rc, files, _ = _run(capsys, "generate", "--model", str(debug_model), "--prompt", "kick", "--steps", "2",
                        "--seed", "1", "--count", "2", "--out-dir", str(tmp_path), "--format", "wav16",
                        "--length", "auto", "--quiet")
    assert rc == 0 and len(files) == 2
    for f in files:
        info = sf.info(f)
        assert info.subtype == "PCM_16" and 882 <= info.frames <= 88200
        meta = read_metadata(f)
        assert meta["length"] == "auto" and meta["format"] == "wav16" and meta["model"].startswith("debug")
    rc, files, _ = _run(capsys, "generate", "--model", str(debug_model), "--prompt", "kick", "--steps", "2",
                        "--output", str(tmp_path / "half.flac"), "--length", "0.5", "--format", "flac", "--quiet")
    assert rc == 0 and files == [str(tmp_path / "half.flac")] and sf.info(files[0]).frames == 22050


def test_generate_output_names_a_clip_file_and_replaces_only_clips(debug_model: Path, tmp_path: Path,
                                                                    capsys) -> None:
    """--output takes a .wav or .flac name that --format agrees with, and replaces an earlier clip, never a file
    sampleforge did not write (the user's own sample, their notes)."""
    def gen(out: Path, *more: str) -> tuple[int, list[str], str]:
        return _run(capsys, "generate", "--model", str(debug_model), "--prompt", "kick", "--steps", "2",
                    "--output", str(out), "--quiet", *more)

    notes, mine, clip = tmp_path / "notes.txt", tmp_path / "mine.wav", tmp_path / "clip.wav"
    notes.write_text("important")
    sf.write(mine, np.zeros(4410, np.float32), 44100)
    before = mine.read_bytes()
    for out, more, needle in [(notes, (), "writes .wav or .flac"), (tmp_path / "kick", (), "writes .wav or .flac"),
                              (tmp_path / "x.wav", ("--format", "flac"), "disagree"),
                              (tmp_path / "x.flac", ("--format", "wav16"), "disagree"),
                              (mine, (), "not written by sampleforge")]:
        rc, _, err = gen(out, *more)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, (out, err)
    assert notes.read_text() == "important" and mine.read_bytes() == before and not (tmp_path / "x.flac").exists()
    assert gen(clip, "--seed", "1")[0] == 0 and gen(clip, "--seed", "2")[0] == 0  # a clip replaces a clip
    assert read_metadata(clip)["seed"] == "2"


@pytest.mark.parametrize("args, needle", [(["--length", "long"], "--length"), (["--length", "-2"], "--length")])
def test_generate_bad_length(debug_model: Path, capsys, args: list[str], needle: str) -> None:
    rc, _, err = _run(capsys, "generate", "--model", str(debug_model), "--prompt", "kick", *args)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_vary_cli_writes_provenance(debug_model: Path, snare_file: Path, tmp_path: Path, capsys) -> None:
    rc, files, _ = _run(capsys, "vary", "--model", str(debug_model), "--input", str(snare_file), "--strength",
                        "0.3", "--count", "3", "--seed", "7", "--prompt", "bright snare", "--steps", "4",
                        "--out-dir", str(tmp_path), "--quiet")
    assert rc == 0 and len(files) == 3
    assert re.fullmatch(r"my_snare_var030_7_[0-9a-f]{8}\.wav", Path(files[0]).name)  # a prompt: its own tag
    meta = read_metadata(files[1])
    assert (meta["operation"], meta["strength"], meta["seed"], meta["input"]) == ("vary", "0.3", "8",
                                                                                  "my_snare.wav")
    assert len(meta["input_sha256"]) == 16 and meta["prompt"] == "bright snare" and meta["fit_steps"] == "50"
    before = {f: Path(f).read_bytes() for f in files}
    rc, dark, _ = _run(capsys, "vary", "--model", str(debug_model), "--input", str(snare_file), "--strength", "0.3",
                       "--count", "1", "--seed", "7", "--prompt", "dark snare", "--steps", "4", "--out-dir",
                       str(tmp_path), "--quiet")
    assert rc == 0 and dark[0] not in files  # another prompt, the same seed: another file
    assert all(Path(f).read_bytes() == b for f, b in before.items())  # nothing written over
    gen = sampleforge.Generator.from_pretrained(debug_model)
    with pytest.MonkeyPatch.context() as m:  # the debug model standing for the default one
        m.setattr("sampleforge.api.load_generator", lambda **kw: (gen, True))
        plain = sampleforge.vary(snare_file, strength=0.3, seed=7, out_dir=tmp_path)
        unfit = sampleforge.vary(snare_file, strength=0.3, seed=7, out_dir=tmp_path, fit_steps=0)
    assert [p.name for p in plain] == ["my_snare_var030_7.wav"]  # the default settings: the plain name
    assert re.fullmatch(r"my_snare_var030_7_[0-9a-f]{8}\.wav", unfit[0].name)  # another fit: another file
    assert read_metadata(unfit[0])["fit_steps"] == "0" and unfit[0].read_bytes() != plain[0].read_bytes()


@pytest.mark.parametrize("args, needle", [
    (["--input", "/nonexistent.wav"], "--input"),
    (["--strength", "1.5"], "strength"),
    (["--count", "0"], "count"),
])
def test_vary_bad_values(debug_model: Path, snare_file: Path, tmp_path: Path, capsys, args, needle) -> None:
    base = ["vary", "--model", str(debug_model), "--input", str(snare_file), "--steps", "2", "--quiet",
            "--out-dir", str(tmp_path)]
    rc, _, err = _run(capsys, *base, *args)
    assert rc == 2 and needle in err


def test_vary_refuses_a_file_that_is_not_audio(debug_model: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    rc, _, err = _run(capsys, "vary", "--model", str(debug_model), "--input", str(bad), "--quiet")
    assert rc == 2 and "notes.wav" in err


def test_morph_cli_endpoints_are_the_sources(debug_model: Path, tmp_path: Path, capsys) -> None:
    rc, files, _ = _run(capsys, "morph", "--model", str(debug_model), "--from-prompt", "kick", "--to-prompt",
                        "snare", "--seed", "4", "--morph-steps", "3", "--steps", "3", "--out-dir",
                        str(tmp_path / "m"), "--quiet")
    assert rc == 0 and len(files) == 3
    _run(capsys, "generate", "--model", str(debug_model), "--prompt", "snare", "--seed", "5", "--steps", "3",
         "--output", str(tmp_path / "b.wav"), "--quiet")
    last, _ = sf.read(files[-1])
    ref, _ = sf.read(str(tmp_path / "b.wav"))
    np.testing.assert_allclose(last, ref, atol=1e-4)
    assert read_metadata(files[1])["t"] == "0.5000"
    rc, _, err = _run(capsys, "morph", "--model", str(debug_model), "--from-input", str(files[0]), "--quiet")
    assert rc == 2 and "--to-input" in err


def test_kit_cli_and_python_api(debug_model: Path, tmp_path: Path, capsys) -> None:
    rc, out, _ = _run(capsys, "kit", "--model", str(debug_model), "--prompt", "dusty 808", "--pieces",
                      "kick,snare,open_hat", "--steps", "2", "--seed", "1", "--out-dir", str(tmp_path / "k"),
                      "--quiet")
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert names == sorted(["drumkit.xml", "gm_map.csv", "kit.dspreset", "kit.json", "kit.sfz", "kick.wav",
                            "open_hat.wav", "snare.wav"])
    assert sf.info(str(tmp_path / "k" / "kick.wav")).subtype == "PCM_24"
    rc, _, err = _run(capsys, "kit", "--model", str(debug_model), "--out-dir", str(tmp_path / "k"), "--quiet")
    assert rc == 2 and "not empty" in err
    rc, _, err = _run(capsys, "kit", "--model", str(debug_model), "--pieces", "kick,gong", "--out-dir",
                      str(tmp_path / "k2"), "--quiet")
    assert rc == 2 and "gong" in err and not (tmp_path / "k2").exists()
    folder = sampleforge.make_kit(tmp_path / "api", prompt="dusty 808", pieces=["kick", "snare", "open_hat"], seed=1,
                                  steps=2, model=debug_model)
    for n in ("kick.wav", "snare.wav", "open_hat.wav"):
        np.testing.assert_array_equal(sf.read(str(folder / n))[0], sf.read(str(tmp_path / "k" / n))[0])


def test_vary_morph_and_kit_take_another_vocoder(debug_model: Path, model_without_vocoder: Path, snare_file: Path,
                                                 tmp_path: Path, capsys) -> None:
    """`--vocoder-ckpt` (a vocoder folder, as drums-vocoder-v1 ships) on vary, morph and kit: the files record it in
    the model id, and the waveform is not Griffin-Lim's. With --no-vocoder it is a one-line error."""
    from sampleforge.bundle import model_id

    base = model_without_vocoder
    common = ["--model", str(base), "--steps", "2", "--seed", "5", "--quiet"]
    made = {}
    for voc in ([], ["--vocoder-ckpt", str(debug_model)]):
        out = tmp_path / ("with" if voc else "without")
        rc, files, _ = _run(capsys, "vary", *common, *voc, "--input", str(snare_file), "--out-dir", str(out))
        assert rc == 0 and len(files) == 1
        made[bool(voc)] = sf.read(files[0])[0]
        assert read_metadata(files[0])["model"] == model_id(base) + (f"+{model_id(debug_model)}" if voc else "")
    assert not np.allclose(made[True], made[False])
    rc, files, _ = _run(capsys, "morph", *common, "--vocoder-ckpt", str(debug_model), "--from-prompt", "kick",
                        "--to-prompt", "snare", "--morph-steps", "3", "--out-dir", str(tmp_path / "m"))
    assert rc == 0 and all(read_metadata(f)["model"].endswith(f"+{model_id(debug_model)}") for f in files)
    rc, _, _ = _run(capsys, "kit", *common, "--vocoder-ckpt", str(debug_model), "--pieces", "kick,snare",
                    "--out-dir", str(tmp_path / "k"))
    assert rc == 0 and read_metadata(tmp_path / "k" / "kick.wav")["model"].endswith(f"+{model_id(debug_model)}")
    rc, _, err = _run(capsys, "kit", *common, "--vocoder-ckpt", str(debug_model), "--no-vocoder",
                      "--out-dir", str(tmp_path / "k2"))
    assert rc == 2 and "--no-vocoder and --vocoder-ckpt contradict each other" in err
    for flag in ("--vocoder-ckpt", "--diffusion-ckpt", "--vae-ckpt"):  # empty: not "not given"
        rc, _, err = _run(capsys, "generate", "kick", flag, "", "--out-dir", str(tmp_path / "e"))
        assert rc == 2 and f"argument {flag}: empty" in err and not (tmp_path / "e").exists()


def test_vary_takes_input_and_prompt_words(debug_model: Path, snare_file: Path, tmp_path: Path, capsys) -> None:
    """`sampleforge vary my_snare.wav bright snare`: the file to vary, then the prompt's words."""
    rc, files, _ = _run(capsys, "vary", str(snare_file), "bright", "snare", "--model", str(debug_model), "--steps",
                        "2", "--out-dir", str(tmp_path), "--quiet")
    assert rc == 0 and len(files) == 1
    meta = read_metadata(files[0])
    assert meta["input"] == "my_snare.wav" and meta["prompt"] == "bright snare"
    rc, _, err = _run(capsys, "vary", str(snare_file), "--input", str(tmp_path / "other.wav"), "--model",
                      str(debug_model), "--out-dir", str(tmp_path))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--input" in err and "differ" in err


def test_morph_and_kit_take_the_prompt_as_words(debug_model: Path, tmp_path: Path, capsys) -> None:
    rc, files, _ = _run(capsys, "morph", "dusty", "kick", "--model", str(debug_model), "--steps", "2",
                        "--morph-steps", "2", "--out-dir", str(tmp_path / "m"), "--quiet")
    assert rc == 0 and [read_metadata(f)["prompt"] for f in files] == ["dusty kick -> dusty kick"] * 2
    rc, _, _ = _run(capsys, "kit", "dusty", "808", "--model", str(debug_model), "--pieces", "kick", "--steps", "2",
                    "--out-dir", str(tmp_path / "k"), "--quiet")
    assert rc == 0 and read_metadata(tmp_path / "k" / "kick.wav")["kit_prompt"] == "dusty 808"
    rc, _, err = _run(capsys, "kit", "dusty", "--prompt", "clean", "--model", str(debug_model), "--out-dir",
                      str(tmp_path / "k2"))
    assert rc == 2 and "differ" in err and not (tmp_path / "k2").exists()
    for flag, other in (("--from-prompt", "--to-prompt"), ("--to-prompt", "--from-prompt")):  # one end named
        rc, _, err = _run(capsys, "morph", flag, "kick", "--model", str(debug_model), "--out-dir", str(tmp_path / "m2"))
        assert rc == 2 and f"{flag} gives one end only: give the other with {other}" in err
    rc, files, _ = _run(capsys, "morph", "--from-prompt", "kick", "snare", "--model", str(debug_model), "--steps", "1",
                        "--morph-steps", "2", "--out-dir", str(tmp_path / "m3"), "--quiet")
    assert rc == 2  # "snare" is --from-prompt's second word: still one end


def test_flags_that_take_several_values_take_them_all(debug_model: Path, tmp_path: Path, capsys) -> None:
    """`kit --pieces kick snare --name My Kit`, `morph --from-prompt deep kick`, `generate --prompt punchy 808 kick`:
    the values after the first are the flag's too (they were taken as the prompt, or refused as a second one)."""
    rc, _, _ = _run(capsys, "kit", "--pieces", "kick", "snare", "--name", "My", "Kit", "--model", str(debug_model),
                    "--steps", "1", "--out-dir", str(tmp_path / "k"), "--quiet")
    assert rc == 0 and sorted(p.name for p in (tmp_path / "k").glob("*.wav")) == ["kick.wav", "snare.wav"]
    assert read_metadata(tmp_path / "k" / "kick.wav")["kit_prompt"] == ""
    assert '"name": "My Kit"' in (tmp_path / "k" / "kit.json").read_text()
    rc, _, _ = _run(capsys, "kit", "--pieces", "kick,", "snare", "--model", str(debug_model), "--steps", "1",
                    "--out-dir", str(tmp_path / "k2"), "--quiet")  # the comma-separated form, mixed in
    assert rc == 0 and sorted(p.name for p in (tmp_path / "k2").glob("*.wav")) == ["kick.wav", "snare.wav"]
    rc, files, _ = _run(capsys, "morph", "--from-prompt", "deep", "kick", "--to-prompt", "bright", "snare",
                        "--model", str(debug_model), "--steps", "1", "--morph-steps", "2", "--out-dir",
                        str(tmp_path / "m"), "--quiet")
    assert rc == 0 and read_metadata(files[0])["prompt"] == "deep kick -> bright snare"
    rc, files, _ = _run(capsys, "generate", "--prompt", "punchy", "808", "kick", "--model", str(debug_model),
                        "--steps", "1", "--out-dir", str(tmp_path / "g"), "--quiet")
    assert rc == 0 and read_metadata(files[0])["prompt"] == "punchy 808 kick"
    rc, _, err = _run(capsys, "kit", "--pieces", "kick", "snare", "dusty", "--model", str(debug_model),
                      "--out-dir", str(tmp_path / "k3"))  # a word after the pieces is no piece: said so
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--pieces" in err and "'dusty'" in err


def test_a_second_sample_or_an_unused_prompt_is_refused(debug_model: Path, snare_file: Path, tmp_path: Path,
                                                        capsys) -> None:
    """`vary a.wav b.wav` (a shell glob), `morph --to-input b.wav c.wav`: the extra file is not a prompt; a prompt
    that neither end of a morph uses is not dropped in silence."""
    base = ["--model", str(debug_model), "--steps", "1", "--out-dir", str(tmp_path / "out"), "--quiet"]
    for args, needle in [
        (["vary", str(snare_file), str(snare_file.with_name("other.wav"))], "--input takes one sample"),
        (["vary", "--prompt", "bright", str(snare_file)], "give the sample to vary first"),
        (["morph", "--from-input", str(snare_file), "--to-input", str(snare_file), "c.flac"],
         "--from-input and --to-input take one sample each"),
        (["morph", "punchy", "--from-prompt", "kick", "--to-prompt", "snare"], "used by neither end"),
    ]:
        rc, _, err = _run(capsys, *args, *base)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, (args, err)
    assert not (tmp_path / "out").exists()


def test_vary_does_not_write_over_other_variations(debug_model: Path, snare_file: Path, tmp_path: Path,
                                                   capsys) -> None:
    """Variations through Griffin-Lim are other files than the vocoder's (--no-vocoder wrote over them: the same
    name); a variation of another file of the same name is refused before generating, not written over the
    first sample's; the same sample again rewrites its own."""
    base = ["--model", str(debug_model), "--steps", "1", "--seed", "2", "--out-dir", str(tmp_path / "v"), "--quiet"]
    rc, first, _ = _run(capsys, "vary", str(snare_file), *base)
    rc2, griffin, _ = _run(capsys, "vary", str(snare_file), "--no-vocoder", *base)
    assert rc == rc2 == 0 and griffin != first and all(Path(f).is_file() for f in first + griffin)
    kept = Path(first[0]).read_bytes()
    rc, again, _ = _run(capsys, "vary", str(snare_file), *base)
    assert rc == 0 and again == first
    other = tmp_path / "elsewhere" / snare_file.name
    assert main(["generate", "kick", "--model", str(debug_model), "--steps", "1", "--seed", "9", "--output",
                 str(other), "--quiet"]) == 0
    capsys.readouterr()  # its own warnings
    rc, _, err = _run(capsys, "vary", str(other), *base)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--out-dir: {first[0]} exists and is not a variation of this my_snare.wav" in err
    assert "(vary into another --out-dir)" in err and Path(first[0]).read_bytes() == kept


def test_kit_overwrite_lists_what_it_wrote_not_the_users_files(debug_model: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "kit"
    folder.mkdir()
    notes = folder / "mynotes.txt"
    notes.write_text("mine")  # written just now, as the kit is: a file's time does not tell them apart
    assert main(["kit", "--pieces", "kick,snare", "--model", str(debug_model), "--steps", "1", "--out-dir", str(folder),
                 "--overwrite", "--quiet"]) == 0
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert "7 files (2 samples, kit.sfz" in said and "mynotes.txt" not in said and notes.read_text() == "mine", said
    kit = json.loads((folder / "kit.json").read_text())
    assert [s["file"] for s in kit["samples"]] == ["kick.wav", "snare.wav"]


@pytest.fixture(scope="module")
def firm_plain_model(knob_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The knob model guiding a prompt that sets no knob at 4.5: a morph's or a batch's scale is not the one
    ``resolve`` gives."""
    from tests.model_folders import edited_copy

    return edited_copy(knob_model, tmp_path_factory.mktemp("models") / "firm",
                       lambda c: c["diffusion"].update(cfg_scale_no_knobs=4.5))


def _refused_before_generating(monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleforge.pipeline import Generator

    for name in ("morph", "run", "render"):
        monkeypatch.setattr(Generator, name, lambda *a, **k: pytest.fail("generated before refusing"))


@pytest.mark.parametrize("ends", [("kick", "snare"), ("kick", "long kick")])  # the same scale at both ends, or not
def test_morph_replaces_its_own_files_never_the_users(debug_model: Path, firm_plain_model: Path, tmp_path: Path,
                                                      capsys, monkeypatch: pytest.MonkeyPatch, ends) -> None:
    """A morph again rewrites its own files; a file of the user's by one of its names, or a folder there, is
    refused before anything is rendered, and kept."""
    for model in (debug_model, firm_plain_model):
        args = ["morph", "--model", str(model), "--from-prompt", ends[0], "--to-prompt", ends[1], "--morph-steps",
                "3", "--steps", "1", "--seed", "4", "--out-dir", str(tmp_path / model.name), "--quiet"]
        rc, files, _ = _run(capsys, *args)
        assert rc == 0 and len(files) == 3
        rc, again, _ = _run(capsys, *args)
        assert rc == 0 and again == files
        Path(files[0]).write_text("mine")
        Path(files[2]).unlink()
        Path(files[2]).mkdir()
        with monkeypatch.context() as m:
            _refused_before_generating(m)
            rc, _, err = _run(capsys, *args)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert f"--out-dir: {files[0]} exists and was not written by sampleforge; not replaced" in err
        assert Path(files[0]).read_text() == "mine" and "model" in read_metadata(files[1])
        Path(files[0]).unlink()
        with monkeypatch.context() as m:
            _refused_before_generating(m)
            rc, _, err = _run(capsys, *args)
        assert rc == 2 and f"--out-dir: {files[2]} is a folder, not a file" in err and Path(files[2]).is_dir()


def test_demo_replaces_its_own_files_never_the_users(firm_plain_model: Path, tmp_path: Path, capsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["demo", "--model", str(firm_plain_model), "--per-class", "1", "--seed", "1", "--out-dir",
            str(tmp_path / "demo")]
    assert main(args) == 0
    made = sorted((tmp_path / "demo").iterdir())
    assert len(made) == 7 and main(args) == 0 and sorted((tmp_path / "demo").iterdir()) == made
    capsys.readouterr()
    made[0].write_text("mine")
    with monkeypatch.context() as m:
        _refused_before_generating(m)
        rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--out-dir: {made[0]} exists and was not written by sampleforge; not replaced" in err
    assert made[0].read_text() == "mine"


@pytest.mark.parametrize("output, needle", [
    ("", "--output: empty: give a file name (e.g. --output kick.wav)"),
    (".", "--output: . names a folder: give a file name, or use --out-dir ."),
    ("out/..", "--output: out/.. names a folder"),
    (".wav", "--output .wav: give the file a name before its suffix (e.g. --output kick.wav)"),
    ("x.mp3", "e.g. --output x.wav"),
])
def test_generate_output_that_names_no_file_is_one_line(debug_model: Path, tmp_path: Path, capsys,
                                                        monkeypatch: pytest.MonkeyPatch, output: str,
                                                        needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(capsys, "generate", "kick", "--model", str(debug_model), "--steps", "1", "--output", output)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert list(tmp_path.iterdir()) == []


def test_vary_reads_the_words_after_input_as_the_prompt(debug_model: Path, snare_file: Path, tmp_path: Path,
                                                        capsys) -> None:
    """`vary --input a.wav punchy snare`: the sample is --input's, the words are the prompt (they were refused as
    a second INPUT); a second sample is still refused."""
    rc, files, _ = _run(capsys, "vary", "--input", str(snare_file), "punchy", "snare", "--model", str(debug_model),
                        "--steps", "1", "--seed", "2", "--out-dir", str(tmp_path), "--quiet")
    assert rc == 0 and len(files) == 1 and read_metadata(files[0])["prompt"] == "punchy snare"
    rc, _, err = _run(capsys, "vary", "--input", str(snare_file), "punchy", "--prompt", "dark", "--model",
                      str(debug_model), "--out-dir", str(tmp_path))
    assert rc == 2 and "--prompt 'dark' and the prompt 'punchy' differ" in err


def test_kit_overwrite_leaves_only_the_new_kit(debug_model: Path, tmp_path: Path, capsys,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--overwrite over an earlier kit: its samples the new kit does not write over are removed, and only those
    (listed by its kit.json, in the folder, written by sampleforge); a file of the user's by one of the new kit's
    sample names is refused before generating."""
    folder = tmp_path / "kit"
    base = ["kit", "--model", str(debug_model), "--steps", "1", "--seed", "1", "--out-dir", str(folder), "--quiet"]
    assert main([*base, "--pieces", "kick", "snare", "clap", "--round-robins", "2"]) == 0
    (folder / "notes.txt").write_text("mine")
    (folder / "snare_rr1.wav").write_text("my own snare")  # the user's file now, by an earlier sample's name
    outside = tmp_path / "outside.wav"
    outside.write_bytes((folder / "clap_rr1.wav").read_bytes())  # a clip sampleforge wrote, out of the folder
    kit = json.loads((folder / "kit.json").read_text())
    kit["samples"].append({**kit["samples"][0], "file": "../outside.wav"})
    (folder / "kit.json").write_text(json.dumps(kit))
    assert main([*base, "--pieces", "kick", "open_hat", "--overwrite"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["drumkit.xml", "gm_map.csv", "kit.dspreset", "kit.json", "kit.sfz", "kick.wav", "open_hat.wav",
         "notes.txt", "snare_rr1.wav"])
    assert (folder / "snare_rr1.wav").read_text() == "my own snare" and outside.is_file()
    assert "model" in read_metadata(folder / "kick.wav")
    capsys.readouterr()
    (folder / "kick.wav").write_text("my own kick")
    with monkeypatch.context() as m:
        _refused_before_generating(m)
        rc = main([*base, "--pieces", "kick", "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "kick.wav exists and was not written by sampleforge" in err
    assert (folder / "kick.wav").read_text() == "my own kick" and (folder / "open_hat.wav").is_file()


@pytest.mark.parametrize("name, needle", [(5, "name must be text, got int"), ("", "name must not be empty"),
                                          ("a\nb", r"name must be one line without control characters, got 'a\nb'")])
def test_make_kit_checks_its_name_first(debug_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        name: object, needle: str) -> None:
    from sampleforge.errors import ParamError

    monkeypatch.setattr("sampleforge.workflow._generator", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(ParamError, match=re.escape(needle)):
        sampleforge.make_kit(tmp_path / "k", name=name, model=debug_model, steps=1)  # type: ignore[arg-type]
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("name", ["a\nb", "a\rb", " "])
def test_kit_name_on_one_line_or_refused(debug_model: Path, tmp_path: Path, capsys, name: str) -> None:
    rc, _, err = _run(capsys, "kit", "--model", str(debug_model), "--name", name, "--out-dir", str(tmp_path / "k"))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "error: --name must" in err, err
    assert not (tmp_path / "k").exists()


def test_folder_flags_naming_a_file_name_the_flag(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import sampleforge.serve.commands as serve_commands

    monkeypatch.setattr(serve_commands, "load_generator", lambda *a, **k: pytest.fail("the model loaded"))
    file = tmp_path / "afile"
    file.write_text("keep")
    for argv, needle in [(["demo", "--per-class", "1", "--out-dir", str(file)], f"--out-dir: {file} is a file"),
                         (["serve", "--storage", str(file), "--port", "0"], f"--storage {file}: {file} is a file"),
                         (["worker", "--broker", "redis://localhost:1", "--storage", str(file / "jobs")],
                          f"--storage {file / 'jobs'}: {file} is a file")]:
        rc, _, err = _run(capsys, *argv)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, (argv, err)
    assert file.read_text() == "keep"


def test_demo_says_the_warnings_of_its_generation(debug_model: Path, tmp_path: Path, capsys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleforge.pipeline import Generator

    real = Generator.generate_full

    def with_a_warning(self: Generator, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        made = real(self, *args, **kwargs)  # type: ignore[arg-type]
        made.warnings.append("'crash' still rings where its 2-s clip ends")
        return made

    monkeypatch.setattr(Generator, "generate_full", with_a_warning)
    assert main(["demo", "--model", str(debug_model), "--per-class", "1", "--out-dir", str(tmp_path / "d")]) == 0
    assert "warning: 'crash' still rings where its 2-s clip ends" in capsys.readouterr().err
