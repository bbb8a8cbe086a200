"""Model folders: save → load → identical outputs; strict configs; named errors; where shipped models are found."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sampleforge.bundle import inspect_bundle, load_bundle, resolve_model, save_bundle
from sampleforge.errors import CheckpointError, ConfigError
from sampleforge.model_config import ModelConfig
from tests.model_folders import edited_copy


def _outputs(bundle) -> list[torch.Tensor]:
    torch.manual_seed(0)
    mel = torch.randn(1, 128, 173) - 5
    z = bundle.vae.encode(mel)
    cond = bundle.text(torch.tensor([[1, 2, 0, 0]]))
    eps = bundle.unet(z, torch.tensor([500.0]), cond)
    return [z, bundle.vae.decode(z, 173), cond, eps, bundle.vocoder(mel)]


def test_save_load_identical(debug_model: Path, tmp_path: Path) -> None:
    a = load_bundle(debug_model)
    out = save_bundle(a, tmp_path / "copy")
    b = load_bundle(out)
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert b.vocab == a.vocab
    assert json.loads((out / "config.json").read_text()) == json.loads((debug_model / "config.json").read_text())


def test_strict_config_unknown_key(debug_model: Path, tmp_path: Path) -> None:
    bad = edited_copy(debug_model, tmp_path / "bad", lambda c: c["unet"].update(chanels=[1, 2]))
    with pytest.raises(ConfigError, match="chanels"):
        load_bundle(bad)


def test_strict_config_wrong_type() -> None:
    with pytest.raises(ConfigError, match="vae.latent_channels"):
        ModelConfig.from_dict({"vae": {"latent_channels": "four"}})


def test_cross_section_mismatch(debug_model: Path, tmp_path: Path) -> None:
    bad = edited_copy(debug_model, tmp_path / "bad", lambda c: c["unet"].update(in_channels=7))
    with pytest.raises(ConfigError, match="in_channels"):
        load_bundle(bad)


def test_missing_tensor_named(debug_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(debug_model, bad)
    state = load_file(str(bad / "vae.safetensors"))
    del state["decoder.conv_in.weight"]
    save_file(state, str(bad / "vae.safetensors"))
    with pytest.raises(CheckpointError, match=r"vae.safetensors: missing key 'decoder.conv_in.weight'"):
        load_bundle(bad)


def test_mismatched_shape_named(debug_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(debug_model, bad)
    state = load_file(str(bad / "unet.safetensors"))
    state["conv_in.weight"] = torch.zeros(3, 3, 3)
    save_file(state, str(bad / "unet.safetensors"))
    with pytest.raises(CheckpointError, match=r"unet.safetensors: key 'conv_in.weight' has shape"):
        load_bundle(bad)


def test_corrupt_safetensors(debug_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(debug_model, bad)
    (bad / "text.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="text.safetensors: not a readable safetensors"):
        load_bundle(bad)


def test_missing_component_file(debug_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(debug_model, bad)
    (bad / "vocoder.safetensors").unlink()
    with pytest.raises(CheckpointError, match="vocoder.safetensors: missing"):
        load_bundle(bad)
    # …but the Griffin-Lim path does not need it
    assert load_bundle(bad, components={"vocoder": None}).vocoder is None


def test_resolve_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="unknown model 'no-such-model'"):
        resolve_model("no-such-model")
    with pytest.raises(CheckpointError, match="not a model folder"):
        load_bundle(tmp_path)


def test_dot_is_the_working_folder_by_its_own_name(debug_model: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """"." never means the shipped-weights folder, and a model used as "." has its folder's name (its files' ids)."""
    from sampleforge.bundle import model_id

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match=f"{tmp_path}: no such model folder|{tmp_path}: not a model folder"):
        load_bundle(resolve_model("."))
    monkeypatch.chdir(debug_model)
    assert resolve_model(".") == debug_model.resolve() and model_id(resolve_model(".")).startswith(debug_model.name)
    monkeypatch.chdir(debug_model / "..")
    assert resolve_model(f"..{os.sep}{debug_model.parent.name}{os.sep}{debug_model.name}").name == debug_model.name


def test_inspect(debug_model: Path) -> None:
    info = inspect_bundle(debug_model)
    assert set(info["components"]) == {"vae", "unet", "text", "vocoder"}
    b = load_bundle(debug_model)
    assert info["components"]["unet"]["parameters"] == sum(p.numel() for p in b.unet.parameters())
    assert info["components"]["vae"]["dtypes"] == ["float32"]
    assert len(info["components"]["vae"]["sha256"]) == 64
    assert "kick" in info["vocab"]


def test_shipped_models_are_found_in_the_installed_package_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sampleforge import bundle

    dirs = bundle.weights_dirs()
    assert dirs[-2:] == [bundle.PACKAGE_DIR / "weights", bundle.REPO_ROOT / "weights"]
    shipped = resolve_model("drums-v1")
    monkeypatch.setattr(bundle, "REPO_ROOT", tmp_path / "no-checkout")  # as after a non-editable install
    monkeypatch.setattr(bundle, "PACKAGE_DIR", tmp_path / "site-packages" / "sampleforge")
    with pytest.raises(CheckpointError, match="known: none"):
        resolve_model("drums-v1")
    shutil.copytree(shipped, tmp_path / "site-packages" / "sampleforge" / "weights" / "drums-v1")
    assert resolve_model("drums-v1") == tmp_path / "site-packages" / "sampleforge" / "weights" / "drums-v1"
    mine = tmp_path / "mine"
    (mine / "drums-v1").mkdir(parents=True)
    monkeypatch.setenv("SAMPLEFORGE_WEIGHTS", str(mine))  # the user's own folder comes first
    assert resolve_model("drums-v1") == mine / "drums-v1"


def test_a_run_folder_named_like_a_shipped_model_does_not_hide_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = resolve_model("drums-v1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "drums-v1" / "diffusion").mkdir(parents=True)  # a training run's folder, no config.json
    assert resolve_model("drums-v1") == shipped
    assert resolve_model("./drums-v1") == Path("./drums-v1")  # a path is taken as given
    (tmp_path / "drums-v1" / "config.json").write_text("{}")  # a model folder of one's own wins
    assert resolve_model("drums-v1") == Path("drums-v1")



def test_a_vocoder_from_another_folder_brings_its_own_config(debug_model: Path, model_without_vocoder: Path,
                                                             tmp_path: Path) -> None:
    """A model without a vocoder takes one from a folder that has it (a vocoder training run's model/): the
    architecture from that folder's config.json, the weights from its file. A lone weight file on such a model,
    or a vocoder made for another mel front end, is refused with the reason."""
    import sampleforge

    base = model_without_vocoder
    assert load_bundle(base).vocoder is None
    voc_file = debug_model / "vocoder.safetensors"
    bundle = load_bundle(base, components={"vocoder": voc_file})
    assert bundle.vocoder is not None and bundle.config.vocoder == load_bundle(debug_model).config.vocoder
    mel = torch.randn(1, 128, 40) - 5
    torch.testing.assert_close(bundle.vocoder(mel), load_bundle(debug_model).vocoder(mel), rtol=0, atol=0)

    kw = dict(diffusion_checkpoint=base, vae_checkpoint=base, prompt="kick", ddim_steps=2, seed=1)
    gl = sampleforge.generate(vocoder_checkpoint=None, output_path=tmp_path / "gl.wav", **kw)
    voc = sampleforge.generate(vocoder_checkpoint=debug_model, output_path=tmp_path / "voc.wav", **kw)
    assert gl.read_bytes() != voc.read_bytes()  # the override is used, not dropped for Griffin-Lim

    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(voc_file, lone / "vocoder.safetensors")
    with pytest.raises(CheckpointError, match="no vocoder section"):
        load_bundle(base, components={"vocoder": lone / "vocoder.safetensors"})
    other = edited_copy(debug_model, tmp_path / "other-mel", lambda c: c["mel"].update(f_max=16000.0))
    with pytest.raises(CheckpointError, match="mel front end differs.*f_max 16000.0 vs"):
        load_bundle(base, components={"vocoder": other / "vocoder.safetensors"})


def test_a_vocoder_folder_is_the_vocoder_of_a_model_not_a_model(debug_model: Path, model_without_vocoder: Path,
                                                                 tmp_path: Path) -> None:
    """A folder of a config.json (mel and vocoder sections) and vocoder.safetensors, as a vocoder is shipped:
    it is the vocoder of any model with its mel front end, and loading it as a model says what it is."""
    folder = tmp_path / "a-vocoder"
    folder.mkdir()
    full = json.loads((debug_model / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({"name": "a-vocoder", "mel": full["mel"], "vocoder": full["vocoder"]}))
    shutil.copy(debug_model / "vocoder.safetensors", folder)
    bundle = load_bundle(model_without_vocoder, components={"vocoder": folder / "vocoder.safetensors"})
    assert bundle.vocoder is not None and bundle.config.vocoder == load_bundle(debug_model).config.vocoder
    with pytest.raises(CheckpointError, match="a vocoder alone, not a model; give it as the vocoder of one"):
        load_bundle(folder)
    info = inspect_bundle(folder)
    assert info["vocoder_only"] and list(info["components"]) == ["vocoder"]
    assert "vocoder" in info["config"] and not {"unet", "vae", "text", "diffusion"} & set(info["config"])
    assert not inspect_bundle(debug_model).get("vocoder_only")


def test_folders_beside_the_models_that_are_not_models_say_what_they_are(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped judge and vocoder sit beside the models: loading one as a model names what it is, and the
    list of known models does not offer them as models."""
    from sampleforge.cli import main

    with pytest.raises(CheckpointError, match="a drum classifier .* not a generation model"):
        load_bundle("classifier-v2")
    assert main(["vocab", "--model", "classifier-v2"]) == 2
    assert "a drum classifier" in capsys.readouterr().err
    assert main(["vocab", "--model", "drums-vocoder-v1"]) == 2
    assert "a vocoder alone" in capsys.readouterr().err
    with pytest.raises(CheckpointError) as unknown:
        resolve_model("drums-v9")
    models, vocoders = str(unknown.value).split("known: ")[1].split("; vocoders, after a model's '+': ")
    assert "drums-v2" in models and "classifier" not in models and "drums-vocoder-v1" not in models
    assert "drums-vocoder-v1" in vocoders


def test_the_id_says_which_vocoder_made_the_waveform(debug_model: Path, model_without_vocoder: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A vocoder from another folder, or Griffin-Lim in place of the model's own vocoder, is part of the id that
    files record and are named by: the same prompt and seed through another vocoder is another file."""
    import sampleforge
    from sampleforge.audio.io import read_metadata
    from sampleforge.bundle import model_id
    from sampleforge.pipeline import Generator

    base = model_without_vocoder
    assert Generator.from_pretrained(debug_model).id == model_id(debug_model)
    assert Generator.from_pretrained(debug_model, components={"vocoder": None}).id == f"{model_id(debug_model)}+griffin-lim"
    assert Generator.from_pretrained(base, components={"vocoder": None}).id == model_id(base)  # Griffin-Lim is its own
    spliced = Generator.from_pretrained(base, components={"vocoder": debug_model / "vocoder.safetensors"})
    assert spliced.id == f"{model_id(base)}+{model_id(debug_model)}"
    monkeypatch.chdir(tmp_path)
    kw = dict(diffusion_checkpoint=base, vae_checkpoint=base, prompt="kick", ddim_steps=2, seed=1)
    plain, voiced = sampleforge.generate(**kw), sampleforge.generate(vocoder_checkpoint=debug_model, **kw)
    assert plain != voiced and plain.is_file() and voiced.is_file()
    assert read_metadata(voiced)["model"] == spliced.id and read_metadata(plain)["model"] == model_id(base)


def test_the_id_changes_with_what_a_prompt_asks_of_the_model(debug_model: Path, tmp_path: Path) -> None:
    """The word tables (vocab.json, timbre.json) decide what a prompt and seed give, as the weights do."""
    import shutil

    from sampleforge.bundle import model_id

    model = tmp_path / "m"
    shutil.copytree(debug_model, model)
    first = model_id(model)
    assert model_id(model) == first and first.startswith("m@")
    (model / "timbre.json").write_text('{"words": {}, "word_reach": {"tom": {"high": 0.5}}}')
    with_reach = model_id(model)
    assert with_reach != first
    (model / "vocab.json").write_text((model / "vocab.json").read_text().replace("kick", "kik"))
    assert model_id(model) not in (first, with_reach)
