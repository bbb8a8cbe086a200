"""Model folders: save → load → identical outputs; strict configs; named errors; legacy .pt import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sampleforge.bundle import (
    ModelConfig,
    convert_legacy,
    import_legacy_pt,
    inspect_bundle,
    inspect_legacy_pt,
    load_bundle,
    resolve_model,
    save_bundle,
)
from sampleforge.errors import CheckpointError, ConfigError


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
    bad = tmp_path / "bad"
    shutil.copytree(debug_model, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["unet"]["chanels"] = [1, 2]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="chanels"):
        load_bundle(bad)


def test_strict_config_wrong_type() -> None:
    with pytest.raises(ConfigError, match="vae.latent_channels"):
        ModelConfig.from_dict({"vae": {"latent_channels": "four"}})


def test_cross_section_mismatch(debug_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(debug_model, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["unet"]["in_channels"] = 7
    (bad / "config.json").write_text(json.dumps(cfg))
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


def test_inspect(debug_model: Path) -> None:
    info = inspect_bundle(debug_model)
    assert set(info["components"]) == {"vae", "unet", "text", "vocoder"}
    b = load_bundle(debug_model)
    assert info["components"]["unet"]["parameters"] == sum(p.numel() for p in b.unet.parameters())
    assert info["components"]["vae"]["dtypes"] == ["float32"]
    assert len(info["components"]["vae"]["sha256"]) == 64
    assert "kick" in info["vocab"]


def _legacy_files(debug_model: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    b = load_bundle(debug_model)
    dif = tmp_path / "diffusion_step_100.pt"
    torch.save({"ema_state_dict": b.unet.state_dict(), "text_enc_state_dict": b.text.state_dict(),
                "vocab": list(b.vocab.counts), "config": b.config.to_dict(), "step": 100}, dif)
    vae = tmp_path / "vae_epoch_1.pt"
    torch.save({"model_state_dict": b.vae.state_dict(), "epoch": 1}, vae)
    voc = tmp_path / "vocoder_epoch_1.pt"
    assert b.vocoder is not None
    torch.save({"generator": b.vocoder.state_dict()}, voc)
    return dif, vae, voc


def test_legacy_pt_import_matches(debug_model: Path, tmp_path: Path) -> None:
    dif, vae, voc = _legacy_files(debug_model, tmp_path)
    out = convert_legacy(dif, vae, voc, tmp_path / "imported")
    a, b = load_bundle(debug_model), load_bundle(out)
    for x, y in zip(_outputs(a), _outputs(b), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    info = inspect_legacy_pt(dif)
    assert info["keys"]["ema_state_dict"]["parameters"] == sum(p.numel() for p in a.unet.parameters())


def test_legacy_pt_layout_mismatch(debug_model: Path, tmp_path: Path) -> None:
    dif, vae, voc = _legacy_files(debug_model, tmp_path)
    obj = import_legacy_pt(vae)
    obj["model_state_dict"]["encoder.extra.weight"] = torch.zeros(1)
    torch.save(obj, vae)
    with pytest.raises(CheckpointError, match=r"vae_epoch_1.pt \(vae\): unexpected key 'encoder.extra.weight'"):
        convert_legacy(dif, vae, voc, tmp_path / "imported")


class Evil:
    """Any non-tensor class: unpickling it would run arbitrary code paths."""


def test_legacy_pt_refuses_pickled_objects(tmp_path: Path) -> None:
    f = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, f)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        import_legacy_pt(f)
