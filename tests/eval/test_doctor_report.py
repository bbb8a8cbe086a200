"""doctor checks on fixture folders, and the HTML report helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sampleforge.eval import doctor, report


def _fake_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "unet.safetensors").write_bytes(b"\0" * 1000)
    return folder


def test_doctor_finds_a_model_folder_and_reports_a_missing_one(tmp_path: Path, debug_model: Path) -> None:
    ok = doctor.check_model(str(debug_model))
    assert ok.status == "ok" and "unet.safetensors" in ok.detail
    broken = doctor.check_model(str(_fake_model(tmp_path / "m")))  # files present, but they do not load
    assert broken.status == "fail" and "does not load" in broken.detail
    missing = doctor.check_model(str(tmp_path / "nowhere"))
    assert missing.status == "fail" and "no folder" in missing.detail and missing.fix
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    assert "no *.safetensors" in doctor.check_model(str(empty)).detail


def test_doctor_loads_a_model_with_another_vocoder(tmp_path: Path, debug_model: Path, debug_vocoder: Path) -> None:
    with_vocoder = doctor.check_model(f"{debug_model}+{debug_vocoder}")
    assert with_vocoder.status == "ok" and with_vocoder.detail.endswith(f"with {debug_vocoder}")
    assert doctor.check_model(f"{debug_model}+griffin-lim").detail.endswith("with Griffin-Lim")
    broken = tmp_path / "broken-vocoder"  # a vocoder folder whose weights are damaged: the check loads them
    broken.mkdir()
    (broken / "config.json").write_text((debug_vocoder / "config.json").read_text())
    (broken / "vocoder.safetensors").write_bytes(b"\0" * 100)
    damaged = doctor.check_model(f"{debug_model}+{broken}")
    assert damaged.status == "fail" and "does not load" in damaged.detail
    not_a_vocoder = doctor.check_model(f"{debug_model}+{debug_model}")
    assert not_a_vocoder.status == "fail" and "not a vocoder folder" in not_a_vocoder.detail and not_a_vocoder.fix


def test_doctor_data_and_classifier_checks(tmp_path: Path) -> None:
    (tmp_path / "kits" / "kitA").mkdir(parents=True)
    (tmp_path / "kits" / "kitB").mkdir()
    assert doctor.check_data([tmp_path / "kits"]).detail.startswith("2 kits")
    absent = doctor.check_data([tmp_path / "none"])
    assert absent.status == "warn" and "make data" in absent.fix
    assert doctor.check_classifier(tmp_path).status == "warn"


def test_doctor_report_text_brief_and_json(tmp_path: Path) -> None:
    checks = doctor.run_checks(model=str(tmp_path / "nowhere"), data_dirs=[tmp_path])
    names = [c.name for c in checks]
    assert {"python", "torch", "devices", "threads", "libsndfile", "numpy", "model", "data"} <= set(names)
    torch_check = checks[names.index("torch")]
    assert "torch 2." in torch_check.detail
    if "CPU-only" in torch_check.detail:
        assert "install a CUDA build" in torch_check.fix
    full = doctor.format_checks(checks)
    brief = doctor.format_checks(checks, brief=True)
    assert "libsndfile 1." in full and "libsndfile" not in brief.split("what to fix")[0]  # ok lines hidden
    assert "[FAIL] model" in brief and "what to fix:" in brief
    assert json.loads(json.dumps(doctor.checks_as_dicts(checks)))[0]["name"] == "python"


def test_report_page_embeds_players_and_images(tmp_path: Path) -> None:
    sr = 44100
    wav = np.sin(2 * np.pi * 200 * np.arange(sr // 4) / sr) * np.exp(-np.arange(sr // 4) / 3000)
    figs = [report.clip_figure(wav, sr, f"clip <{i}>") for i in range(3)]
    html_text = report.page("t", [report.section("s", report.clip_grid(figs))])
    assert html_text.count("<audio") == 3 and html_text.count("data:image/png;base64,") == 3
    assert "clip &lt;0&gt;" in html_text  # captions are escaped
    assert report.spectrogram_png(wav, sr)[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.wav_bytes(wav, sr)[:4] == b"RIFF"


def test_json_safe_replaces_non_finite(tmp_path: Path) -> None:
    p = report.write_json({"a": float("nan"), "b": [float("-inf"), 1.5], "c": np.float32(2.0)}, tmp_path / "x.json")
    assert json.loads(p.read_text()) == {"a": None, "b": [None, 1.5], "c": 2.0}
    assert report.fmt(float("nan")) == "—" and report.fmt(math.pi) == "3.14"
