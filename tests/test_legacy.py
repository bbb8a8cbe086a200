"""Legacy .pt checkpoints: safe reading, inspection, conversion to a model folder, ``sampleforge import``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sampleforge.bundle import load_bundle
from sampleforge.cli import main
from sampleforge.errors import CheckpointError, UserInputError
from sampleforge.legacy import convert_legacy, import_legacy_pt, inspect_legacy_pt


def _outputs(bundle) -> list[torch.Tensor]:
    torch.manual_seed(0)
    mel = torch.randn(1, 128, 173) - 5
    z = bundle.vae.encode(mel)
    cond = bundle.text(torch.tensor([[1, 2, 0, 0]]))
    eps = bundle.unet(z, torch.tensor([500.0]), cond)
    return [z, bundle.vae.decode(z, 173), cond, eps, bundle.vocoder(mel, length=173 * 512)]


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


@pytest.mark.parametrize("content, needle", [(b"hello\n", "not a PyTorch checkpoint"),
                                           (b"", "not a PyTorch checkpoint"), (None, "is a folder")])
def test_legacy_pt_names_a_file_that_is_no_checkpoint(tmp_path: Path, content: bytes | None, needle: str) -> None:
    """A text file, an empty file or a folder is said to be one (not "it holds pickled objects", nor "no such
    file")."""
    f = tmp_path / "model.pt"
    if content is None:
        f.mkdir()
    else:
        f.write_bytes(content)
    with pytest.raises(CheckpointError, match=needle):
        import_legacy_pt(f)


def test_import_command_writes_a_model_folder(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dif, vae, voc = _legacy_files(debug_model, tmp_path)
    out = tmp_path / "imported"
    assert main(["import", str(dif), "--vae", str(vae), "--vocoder", str(voc), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    for x, y in zip(_outputs(load_bundle(debug_model)), _outputs(load_bundle(out)), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    # a second import never overwrites a model folder
    assert main(["import", str(dif), "--vae", str(vae), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_the_api_points_legacy_files_to_the_import_command(tmp_path: Path) -> None:
    import sampleforge

    pt = tmp_path / "diffusion.pt"
    pt.write_bytes(b"")
    with pytest.raises(UserInputError, match="sampleforge import"):
        sampleforge.generate(diffusion_checkpoint=pt, prompt="kick")
