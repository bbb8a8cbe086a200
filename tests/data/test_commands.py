"""data/commands.py through the real CLI entry point: scan (counts, problems, JSON) and synth."""

from __future__ import annotations

import json

from sampleforge.cli import main


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
    assert "--per-class: must be at least 1, got 0" in capsys.readouterr().err


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
    report.write_text('{"old": true}\n')
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
