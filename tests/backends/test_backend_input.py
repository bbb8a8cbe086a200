"""Bad or unusable input to other people's models: settings their samplers do not use are refused, broken
folders and checkpoints are one line naming the file (never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sampleforge.backends import BackendOptions, load_backend
from sampleforge.cli import main
from sampleforge.errors import ParamError
from sampleforge.params import GenerationParams

CPU = BackendOptions(device="cpu")
SAMPLER_SETTINGS = {"eta": 0.5, "steps_offset": 5, "flow_shift": 3.0}


@pytest.mark.parametrize(("fixture", "applied"), [
    ("ldm_dir", ("eta",)), ("sa_dir", ()), ("sa3_dir", ("flow_shift",)), ("adp_ckpt", ("eta",)),
    ("sat_small", ("eta", "flow_shift")),
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


def test_generate_refuses_eta_for_a_scheduler_that_ignores_it(ldm_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.wav"
    assert main(["generate", "--model", str(ldm_dir), "--prompt", "kick", "--steps", "2", "--duration", "0.5",
                 "--sampler", "euler", "--eta", "0.5", "--quiet", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("--eta: --sampler 'euler' does not use it (only native, ddim)"), err
    assert not out.exists()


def test_audioldm2_ddim_eta_is_the_pipelines(ldm_dir: Path) -> None:
    """AudioLDM2's DDIM takes eta as the direct pipeline call does (it was refused: no file records a setting that
    did nothing, and now it does something)."""
    import diffusers

    from sampleforge.eval.metrics import peak_correlation

    pipe = diffusers.AudioLDM2Pipeline.from_pretrained(ldm_dir)
    pipe.set_progress_bar_config(disable=True)
    backend = load_backend(ldm_dir, CPU)
    for sampler in ("native", "ddim"):
        got = backend.generate_full("kick drum", steps=4, cfg_scale=3.0, seed=7, duration=1.0, sampler=sampler,
                                    eta=1.0)
        ref = pipe("kick drum", num_inference_steps=4, guidance_scale=3.0, audio_length_in_s=1.0, eta=1.0,
                   generator=torch.Generator().manual_seed(7)).audios[0]
        plain = pipe("kick drum", num_inference_steps=4, guidance_scale=3.0, audio_length_in_s=1.0,
                     generator=torch.Generator().manual_seed(7)).audios[0]
        assert got.params.eta == 1.0
        assert peak_correlation(got.raw[0].numpy(), ref) > 0.99
        assert peak_correlation(got.raw[0].numpy(), plain) < 0.99  # eta changed the clip


def test_stable_audio_3_flow_shift_multiplies_the_schedulers_shift(sa3_dir: Path, tmp_path: Path) -> None:
    import diffusers

    backend = load_backend(sa3_dir, CPU)
    shifted = diffusers.StableAudio3Pipeline.from_pretrained(sa3_dir)
    shifted.scheduler = type(shifted.scheduler).from_config(shifted.scheduler.config, shift=3.0)
    shifted.set_progress_bar_config(disable=True)
    ref = shifted("kick drum", num_inference_steps=4, guidance_scale=3.0, duration=1.0, output_type="latent",
                  generator=torch.Generator().manual_seed(7)).audios
    got = backend.generate_full("kick drum", steps=4, cfg_scale=3.0, seed=7, duration=1.0, flow_shift=3.0)
    plain = backend.generate_full("kick drum", steps=4, cfg_scale=3.0, seed=7, duration=1.0)
    assert got.latents is not None and plain.latents is not None
    torch.testing.assert_close(got.latents, ref.float(), atol=1e-4, rtol=1e-4)
    assert (plain.latents - ref).abs().max() > 1e-2  # the shift changed the sampling
    assert backend.native_scheduler.config["shift"] == 1.0  # the loaded pipeline keeps its own
    with pytest.raises(ParamError, match="^flow_shift: does not combine with init_audio"):
        backend.resolve(GenerationParams.from_kwargs({"flow_shift": 2.0, "init_audio": str(tmp_path / "a.wav")}))


def test_stable_audio_tools_flow_shift_shifts_its_times(sat_small: tuple[Path, dict, dict],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleforge.backends import sat

    plain = sat.rf_times(8)
    shifted = sat.rf_times(8, shift=3.0)
    torch.testing.assert_close(shifted, 3 * plain / (1 + 2 * plain))  # SD3's shift of the same grid
    assert float(shifted[3]) > float(plain[3])  # more of the steps at high noise
    a2a = sat.rf_times(8, 0.6, 3.0)
    assert float(a2a[0]) == pytest.approx(0.6) and float(a2a[-1]) == 0.0  # still starts at init_noise
    assert bool((a2a[1:] < a2a[:-1]).all()) and float(a2a[2]) > float(sat.rf_times(8, 0.6)[2])

    from sampleforge.diffusion import samplers

    grids: list[torch.Tensor] = []
    real = samplers.get_sampler

    def spy(name: str):  # type: ignore[no-untyped-def]
        def run(denoise, x, times, **kw):  # type: ignore[no-untyped-def]
            grids.append(times)
            return real(name)(denoise, x, times, **kw)
        return run

    monkeypatch.setattr(samplers, "get_sampler", spy)
    backend = load_backend(sat_small[0], CPU)
    backend.generate("kick drum", steps=5, seed=3, duration=1.0, flow_shift=3.0)
    torch.testing.assert_close(grids[-1], sat.rf_times(5, shift=3.0))


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


def test_an_adp_model_and_a_stable_audio_model_load_in_one_process(adp_ckpt: Path, sa_dir: Path) -> None:
    """The torchaudio stand-in audio-diffusion-pytorch is imported with leaves no trace: left in sys.modules, it
    told diffusers that torchaudio was installed, and its Stable Audio modules then failed to import (a server of
    several models)."""
    import importlib.util
    import sys

    from sampleforge.backends import load_backend

    load_backend(str(adp_ckpt))
    if importlib.util.find_spec("audio_diffusion_pytorch") is not None and "torchaudio" in sys.modules:
        assert getattr(sys.modules["torchaudio"], "__spec__", None) is not None  # a real torchaudio only
    importlib.util.find_spec("torchaudio")  # raised ValueError (torchaudio.__spec__ is None)
    from diffusers import StableAudioDiTModel  # noqa: F401

    load_backend(str(sa_dir))
