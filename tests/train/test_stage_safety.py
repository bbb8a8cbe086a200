"""The diffusion stage on a finished run: a refused start changes nothing in the model folder, a resume keeps the
run's keyword ids and its VAE's latent space, and damaged or stale caches are made again."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from sampleforge.cli import main
from tests.train.test_stages import REPO, real_kits  # noqa: F401 (the real_kits fixture)


def _config(folder: Path, **edit: object) -> Path:
    """The debug recipe with timbre knobs (a run writes vocab.json and timbre.json), ``edit`` on its text model."""
    recipe = json.loads((REPO / "configs" / "debug.json").read_text())
    recipe["model"]["text"].update(knobs=["decay", "brightness"], **edit)
    recipe["model"]["vocoder"] = None
    file = folder / f"knobs{len(edit)}.json"
    file.write_text(json.dumps(recipe))
    return file


def _args(stage: str, data: Path, config: Path, run: Path, *more: str) -> list[str]:
    return ["train", stage, "--data", str(data), "--config", str(config), "--out", str(run),
            "--cache", str(run.parent / "cache"), "--no-progress", *more]


@pytest.fixture(scope="module")
def finished(real_kits: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:  # noqa: F811
    """(a run folder whose VAE and diffusion stages are done, its recipe)."""
    root = tmp_path_factory.mktemp("finished")
    config, run = _config(root), root / "run"
    assert main(_args("vae", real_kits, config, run)) == 0
    assert main(_args("diffusion", real_kits, config, run)) == 0
    return run, config


def _copy(finished: tuple[Path, Path], tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished[0], run)
    return run


def _model_files(run: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted((run / "model").iterdir())}


def test_a_refused_start_leaves_the_model_folder_as_it_was(finished: tuple[Path, Path], real_kits: Path,  # noqa: F811
                                                           tmp_path: Path) -> None:
    run, config = _copy(finished, tmp_path), finished[1]
    before = _model_files(run)
    assert {"vocab.json", "timbre.json", "config.json", "unet.safetensors", "text.safetensors"} <= set(before)
    one_kit = tmp_path / "one"
    shutil.copytree(real_kits / "HardElectro1", one_kit / "HardElectro1")
    assert main(_args("diffusion", one_kit, config, run)) == 2  # a checkpoint there, no --resume
    assert _model_files(run) == before
    wider = _config(tmp_path, embed_dim=12)  # another keyword encoder: the checkpoint does not fit it
    assert main(_args("diffusion", real_kits, wider, run, "--resume")) == 2
    assert _model_files(run) == before


def test_a_resume_on_other_clips_keeps_the_runs_keyword_ids(finished: tuple[Path, Path], real_kits: Path,  # noqa: F811
                                                            tmp_path: Path) -> None:
    run, config = _copy(finished, tmp_path), finished[1]
    words = json.loads((run / "model" / "vocab.json").read_text())["keywords"]
    one_kit = tmp_path / "one"
    shutil.copytree(real_kits / "HardElectro1", one_kit / "HardElectro1")
    assert main(_args("diffusion", one_kit, config, run, "--resume", "--max-steps", "5")) == 0
    after = json.loads((run / "model" / "vocab.json").read_text())["keywords"]
    assert list(after)[: len(words)] == list(words)  # each keyword id means what the trained encoder learned
    saved = json.loads((run / "diffusion" / "checkpoint" / "state.json").read_text())["task_state"]
    assert list(saved["vocab"]["keywords"]) == list(after)


def test_a_resume_on_another_vae_is_refused(finished: tuple[Path, Path], real_kits: Path,  # noqa: F811
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, config = _copy(finished, tmp_path), finished[1]
    assert main(_args("vae", real_kits, config, run, "--resume", "--max-steps", "6")) == 0  # the VAE trained on
    capsys.readouterr()
    assert main(_args("diffusion", real_kits, config, run, "--resume", "--max-steps", "6")) == 2
    said = capsys.readouterr().err
    assert "trained on the latents of another VAE" in said and said.count("\n") == 1
    json.loads((run / "model" / "config.json").read_text())  # still whole


def test_damaged_and_stale_caches_are_made_again(finished: tuple[Path, Path], real_kits: Path,  # noqa: F811
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run, config = _copy(finished, tmp_path), finished[1]
    (latents,) = (run / "diffusion").glob("latents-*.safetensors")
    latents.write_bytes(latents.read_bytes()[: latents.stat().st_size // 2])
    (run / "diffusion" / "timbre.json").write_text('{"features": 1, "clips": {')
    with caplog.at_level(logging.WARNING):
        assert main(_args("diffusion", real_kits, config, run, "--resume", "--max-steps", "5")) == 0
    assert "encoding the latents again" in caplog.text and "measuring the clips again" in caplog.text
    assert len(json.loads((run / "diffusion" / "timbre.json").read_text())["clips"]) > 0
    # a clip whose file is replaced by another sound is encoded and measured anew, under the same path
    data = tmp_path / "data"
    shutil.copytree(real_kits, data)
    clap = data / "HardElectro1" / "Amp_Clap_1.flac"
    shutil.copyfile(data / "Millo-Drums_v.1" / "cra_Rock_a.flac", clap)
    keys = {p.name for p in (run / "diffusion").glob("latents-*.safetensors")}
    assert main(_args("diffusion", data, config, run, "--resume", "--max-steps", "6")) == 0
    assert {p.name for p in (run / "diffusion").glob("latents-*.safetensors")} - keys
    measured = json.loads((run / "diffusion" / "timbre.json").read_text())["clips"]
    assert len([k for k in measured if k.startswith(f"{clap}#")]) == 1


def test_a_vocabulary_that_would_be_empty_is_refused(finished: tuple[Path, Path], real_kits: Path,  # noqa: F811
                                                     tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = json.loads(finished[1].read_text())
    recipe.setdefault("data", {})["min_count"] = 100000
    config = tmp_path / "rare.json"
    config.write_text(json.dumps(recipe))
    run = tmp_path / "run"
    shutil.copytree(finished[0], run, ignore=shutil.ignore_patterns("diffusion"))
    assert main(_args("diffusion", real_kits, config, run)) == 2
    assert "data.min_count 100000: no keyword of the training clips is that common" in capsys.readouterr().err


def test_a_second_command_into_a_run_being_trained_is_refused(finished: tuple[Path, Path], real_kits: Path,  # noqa: F811
                                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Stages of one run share its model folder: a `train vae` while the run's diffusion stage trains would
    install another VAE under it."""
    from sampleforge.train.loop import exclusive

    run, config = _copy(finished, tmp_path), finished[1]
    before = _model_files(run)
    with exclusive(run):  # as a `train diffusion --resume` of this run holds it
        assert main(_args("vae", real_kits, config, run, "--resume", "--max-steps", "6")) == 2
    assert f"{run} is in use by another training (process" in capsys.readouterr().err
    assert _model_files(run) == before
    assert main(_args("vae", real_kits, config, run, "--resume", "--max-steps", "6")) == 0
