"""data/commands.py through the real CLI entry point: scan (counts, problems, JSON) and synth."""

from __future__ import annotations

import json
import shutil

import pytest

from sampleforge.cli import main
from sampleforge.data.synth import plan_clips, synth_clip


def test_scan_prints_counts_problems_and_writes_json(kits_dir, tmp_path, capsys):
    out_json = tmp_path / "out" / "scan.json"
    assert main(["data", "scan", str(kits_dir), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "11 clips in 3 kits" in text
    assert "kick            5" in text  # BD_01, BD_02, tom_low_dist, k.flac, hard_01
    assert "TinyKit" in text and "licence: CC0" in text and "OldKit" in text and "licence: unknown" in text
    assert "SN_corrupt.wav: unreadable" in text and "SN_missing.wav: missing file" in text
    assert "strum_C.wav" in text and "not a drum (guitar, strum)" in text
    data = json.loads(out_json.read_text())
    assert data["categories"]["kick"] == 5 and len(data["clips"]) == 11
    assert {c["kit"] for c in data["clips"]} == {"TinyKit", "OldKit", "MyPlain"}
    assert any(p.endswith("SN_corrupt.wav") for p, _ in data["errors"])


def test_scan_brief_summarises(kits_dir, capsys):
    assert main(["data", "scan", str(kits_dir), "--brief"]) == 0
    text = capsys.readouterr().out
    assert "SN_corrupt.wav" not in text
    assert "excluded: " in text and "unreadable: 3" in text


def test_scan_missing_folder_is_a_user_error(tmp_path, capsys):
    assert main(["data", "scan", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "kick.wav").write_bytes(b"RIFF")
    assert main(["data", "scan", str(tmp_path / "kick.wav")]) == 2
    assert f"{tmp_path / 'kick.wav'} is a file, not a folder" in capsys.readouterr().err


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--per-class", "1", "--seed", "4"]) == 0
    assert "wrote 12 clips" in capsys.readouterr().out
    assert len(list(out.glob("*.wav"))) == 12 and (out / "kit.json").is_file()
    assert main(["data", "synth", "--out", str(out), "--per-class", "0"]) == 2
    assert "--per-class: must be an integer from 1 to 9999, got 0" in capsys.readouterr().err


def test_scan_json_never_replaces_a_file_that_is_no_json(kits_dir, tmp_path, capsys):
    """--json naming a sample (or any file that holds no JSON) is a one-line error before the scan, the file
    kept (it was overwritten with the report); a previous report is replaced."""
    sample = tmp_path / "kick.wav"
    sample.write_bytes(b"RIFF....WAVEfmt ")
    assert main(["data", "scan", str(kits_dir), "--json", str(sample)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "holds no JSON" in err
    assert sample.read_bytes() == b"RIFF....WAVEfmt "
    report = tmp_path / "scan.json"
    report.write_text('{"categories": {}, "kits": {}, "clips": [], "errors": [], "excluded": []}\n')
    assert main(["data", "scan", str(kits_dir), "--json", str(report)]) == 0
    assert "clips" in json.loads(report.read_text())


def test_scan_json_that_cannot_be_a_file_is_refused_before_the_scan(kits_dir, tmp_path, capsys):
    """--json naming a folder, or a path through a file, is a one-line error before the scan (the whole report
    was printed, then 'cannot write there')."""
    sample = tmp_path / "kick.wav"
    sample.write_bytes(b"RIFF....WAVEfmt ")
    for target, needle in ((tmp_path, "is a folder"), (sample / "scan.json", f"{sample} is a file, not a folder")):
        assert main(["data", "scan", str(kits_dir), "--json", str(target)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and needle in err and "--json" in err, err


def test_scan_json_never_replaces_json_that_is_no_scan_report(kits_dir, tmp_path, capsys):
    """--json naming a recipe or a kit.json (JSON, but not a report) is a one-line error before the scan, the file
    kept (it was overwritten with the report)."""
    recipe = tmp_path / "myrecipe.json"
    recipe.write_text('{"extends": "debug.json", "train": {"vae": {"max_steps": 12}}}\n')
    kit = tmp_path / "mykit" / "kit.json"
    kit.parent.mkdir()
    kit.write_text('{"name": "My Precious Kit", "author": "Me", "licence": "All rights reserved"}\n')
    listing = tmp_path / "list.json"
    listing.write_text('["categories", "kits", "clips"]\n')
    for target in (recipe, kit, listing):
        before = target.read_bytes()
        assert main(["data", "scan", str(kits_dir), "--json", str(target)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1, err
        assert f"--json {target}: exists and is not a scan report; not replaced" in err
        assert target.read_bytes() == before


def test_scan_with_a_folder_that_is_not_there_among_good_ones_is_an_error(kits_dir, tmp_path, capsys):
    """`data scan GOOD TYPO` is a one-line error before the scan, as `data scan TYPO` is (it scanned GOOD, listed
    the typo under 'unreadable' and exited 0)."""
    typo = tmp_path / "kitz"
    assert main(["data", "scan", str(kits_dir), str(typo)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and f"no such folder: {typo}" in err, err
    sample = tmp_path / "kick.wav"
    sample.write_bytes(b"RIFF")
    assert main(["data", "scan", str(kits_dir), str(sample)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{sample} is a file, not a folder" in err


def _synth_argv(out, *more):
    return ["data", "synth", "--out", str(out), "--per-class", "1", *more]


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synth_never_writes_into_another_kit(kits_dir, tmp_path, capsys):
    """--out holding a user's kit (its kit.json and recordings), a Hydrogen kit or any other file is a one-line
    error naming --out before anything is written (the user's kit.json was replaced, the recordings relabelled
    'generated'; a Hydrogen kit got 12 WAVs and a kit.json, then a traceback)."""
    mykit = tmp_path / "mykit"
    mykit.mkdir()
    (mykit / "kick_01.wav").write_bytes((kits_dir / "plain" / "Kicks" / "808" / "hard_01.wav").read_bytes())
    (mykit / "kit.json").write_text('{"name": "My Precious Kit", "author": "Me", "licence": "All rights reserved"}')
    h2 = tmp_path / "h2"
    shutil.copytree(kits_dir / "OldKit", h2)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("buy snares")
    no_kit_json = tmp_path / "recordings"
    (no_kit_json / "Kicks").mkdir(parents=True)
    (no_kit_json / "Kicks" / "k.wav").write_bytes((h2 / "k.flac").read_bytes())
    for folder, needle in (
        (mykit, f"--out: {mykit} holds another kit ({mykit / 'kit.json'})"),
        (h2, f"--out: {h2} holds another kit ({h2 / 'drumkit.xml'})"),
        (notes, f"--out: {notes} holds {notes / 'todo.txt'}, a file data synth did not write"),
        (no_kit_json, f"--out: {no_kit_json} holds {no_kit_json / 'Kicks' / 'k.wav'}, a file data synth did not"),
    ):
        before = _tree(folder)
        assert main(_synth_argv(folder)) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and needle in err, err
        assert "nothing written (choose a new or empty folder, or one data synth wrote)" in err
        assert _tree(folder) == before


def test_synth_replaces_its_own_folder_never_a_file_of_the_users(tmp_path, capsys):
    """A re-run into synth's own folder (other settings, or an interrupted one) works; a recording the user added
    to it, or a folder where a clip goes, is refused before anything is written."""
    out = tmp_path / "synth"
    assert main(_synth_argv(out, "--seed", "4")) == 0
    assert main(["data", "synth", "--out", str(out), "--per-class", "2", "--seed", "5"]) == 0
    capsys.readouterr()
    made = sorted(out.glob("*.wav"))
    assert len(made) >= 24 and all(synth_clip(p) for p in made)
    (out / ".DS_Store").write_bytes(b"\0")
    assert main(_synth_argv(out, "--seed", "5")) == 0
    capsys.readouterr()
    mine = out / "snare_mine.wav"
    mine.write_bytes(made[0].read_bytes()[:44])
    before = _tree(out)
    assert main(_synth_argv(out, "--seed", "6")) == 2
    err = capsys.readouterr().err
    assert f"--out: {out} holds {mine}, a file data synth did not write" in err and _tree(out) == before
    mine.unlink()
    taken = out / plan_clips(2, 5)[0][0]
    taken.unlink()
    taken.mkdir()
    assert main(["data", "synth", "--out", str(out), "--per-class", "2", "--seed", "5"]) == 2
    assert f"--out: {taken} is a folder, not a clip" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--per-class", "10000"], "argument --per-class: must be an integer from 1 to 9999, got 10000"),
    (["--per-class", "x"], "argument --per-class: must be an integer from 1 to 9999, got x"),
    (["--seed", "-1"], "argument --seed: must be an integer from 0 to 4294967295, got -1"),
    (["--seed", str(2**32)], f"argument --seed: must be an integer from 0 to 4294967295, got {2**32}"),
])  # fmt: skip
def test_synth_per_class_and_seed_out_of_range_are_named_by_the_flag(tmp_path, capsys, argv, needle):
    """--per-class 10000 said 'n_per_category must be in 1..9999'; --seed -1 gave the clips of 4294967295 and
    2**32 those of 0 (the seed wrapped)."""
    assert main(["data", "synth", "--out", str(tmp_path / "s"), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "s").exists()
