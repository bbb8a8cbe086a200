"""Bad or unusable input to other people's models: settings their samplers do not use are refused, broken
folders and checkpoints are one line naming the file (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sampleforge.backends import BackendOptions, load_backend
from sampleforge.cli import main
from sampleforge.errors import ParamError
from sampleforge.params import GenerationParams

CPU = BackendOptions(device="cpu")
SAMPLER_SETTINGS = {"eta": 0.5, "steps_offset": 5, "flow_shift": 3.0}


@pytest.mark.parametrize(("fixture", "applied"), [
    ("ldm_dir", ()), ("sa_dir", ()), ("sa3_dir", ()), ("adp_ckpt", ("eta",)), ("sat_small", ("eta",)),
])
def test_sampler_settings_a_model_does_not_use_are_refused(fixture: str, applied: tuple[str, ...],
                                                           request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(fixture)
    backend = load_backend(model[0] if isinstance(model, tuple) else model, CPU)
    for name, value in SAMPLER_SETTINGS.items():
        params = GenerationParams.from_kwargs({name: value})
        if name in applied:
            assert getattr(backend.resolve(params), name) == value
        else:
            with pytest.raises(ParamError, match=f"^{name}: this model's sampler does not use it"):
                backend.resolve(params)
    assert backend.resolve(GenerationParams()).flow_shift == 1.0  # the defaults are no setting


def test_generate_refuses_eta_for_a_pipeline_that_ignores_it(ldm_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.wav"
    assert main(["generate", "--model", str(ldm_dir), "--prompt", "kick", "--steps", "2", "--duration", "0.5",
                 "--sampler", "ddim", "--eta", "0.5", "--quiet", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--eta" in err[0] and "does not use it" in err[0]
    assert not out.exists()


def test_inspect_of_a_folder_with_a_corrupt_safetensors_header_is_one_line(
        sa_dir: Path, sat_small: tuple[Path, dict, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    for source, weights in ((sa_dir, "transformer/diffusion_pytorch_model.safetensors"),
                            (sat_small[0], "model.safetensors")):
        broken = tmp_path / source.name
        shutil.copytree(source, broken)
        data = (broken / weights).read_bytes()
        (broken / weights).write_bytes(data[: len(data) // 2])
        assert main(["inspect", str(broken)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{weights}: not a readable safetensors file" in err[0], err


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda c: c.update(sample_rate="fast"), "sample_rate must be a whole number"),
    (lambda c: c["model"]["diffusion"]["config"].update(num_heads=0), "num_heads must be at least 1"),
    (lambda c: c["model"]["conditioning"].update(configs="x"), "model.conditioning.configs must be a list"),
    (lambda c: c["model"].update(conditioning="x"), "model.conditioning must be an object"),
    (lambda c: c.update(sample_size=0), "sample_size must be at least 1"),
    (lambda c: c.update(sample_size=1), "sample_size 1 is shorter than one latent frame"),
])
def test_a_stable_audio_tools_config_of_wrong_types_is_one_line_naming_the_field(
        sat_small: tuple[Path, dict, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        edit: object, needle: str) -> None:
    import json
    import shutil

    folder = tmp_path / "sat"
    shutil.copytree(sat_small[0], folder)
    config = json.loads((folder / "model_config.json").read_text())
    edit(config)  # type: ignore[operator]
    (folder / "model_config.json").write_text(json.dumps(config))
    for args in (["inspect", str(folder)], ["generate", "--model", str(folder), "--prompt", "kick", "--quiet",
                                            "--output", str(tmp_path / "x.wav")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "model_config.json" in err[0] and needle in err[0], err
    (folder / "model_config.json").write_text("[1]")
    assert main(["inspect", str(folder)]) == 2
    assert "model_config.json: not a JSON object" in capsys.readouterr().err


def test_a_refused_checkpoint_is_one_sentence_of_ours(adp_ckpt: Path, sat_small: tuple[Path, dict, dict],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A .ckpt holding objects is refused in a fixed sentence (torch's text, cut before its safety caveat, is never
    quoted, nor its warnings shown); bytes that are no checkpoint say so."""
    import shutil
    from collections import OrderedDict

    import torch

    state = torch.load(adp_ckpt, weights_only=True)
    evil = tmp_path / "adp" / "evil.ckpt"
    evil.parent.mkdir()
    torch.save({**state, "hyper_parameters": OrderedDict(model=torch.nn.Linear(1, 1))}, evil)
    sat = tmp_path / "sat"
    shutil.copytree(sat_small[0], sat)
    (sat / "model.safetensors").unlink()
    torch.save({"state_dict": {}, "net": torch.nn.Linear(1, 1)}, sat / "model.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"hello world")
    for model, problem in ((evil, "holds objects other than tensors; refused, not executed"),
                           (sat / "model.ckpt", "holds objects other than tensors; refused, not executed"),
                           (garbage, "not a PyTorch checkpoint")):
        spec = sat if model.parent == sat else model
        assert main(["generate", "--model", str(spec), "--prompt", "kick", "--quiet",
                     "--output", str(tmp_path / "x.wav")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{model}: {problem}" in err[0], err
        assert "weights_only` set to `False" not in err[0] and "cannot be read safely (weights only)" not in err[0]


def test_a_pipeline_that_ships_bin_weights_loads_without_an_error_line(sa_dir: Path, tmp_path: Path,
                                                                       capfd: pytest.CaptureFixture[str],
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Many published pipelines ship .bin weights: diffusers looks for .safetensors first and logs an "error"
    before it loads them fine; the user sees only the clip."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from sampleforge.cli import main

    folder = tmp_path / "bin-weights"
    shutil.copytree(sa_dir, folder)
    (weights,) = (folder / "transformer").glob("*.safetensors")
    torch.save(load_file(weights), folder / "transformer" / "diffusion_pytorch_model.bin")
    weights.unlink()
    assert main(["generate", "--model", str(folder), "--prompt", "kick", "--steps", "1", "--duration", "0.5",
                 "--out-dir", str(tmp_path / "gen"), "--quiet"]) == 0
    assert len(list((tmp_path / "gen").glob("*.wav"))) == 1
    assert "error" not in capfd.readouterr().err.lower()
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("diffusers")]
