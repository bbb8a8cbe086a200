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


def test_import_without_a_vocoder_makes_a_griffin_lim_model(debug_model: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`import` without --vocoder writes a model whose waveforms come from Griffin-Lim, as its help says (it crashed:
    Bundle() missing 'vocoder'); a checkpoint whose config has no vocoder, given --vocoder, is a one-line error
    (KeyError: 'vocoder')."""
    dif, vae, voc = _legacy_files(debug_model, tmp_path)
    out = tmp_path / "griffin"
    assert main(["import", str(dif), "--vae", str(vae), "--out", str(out)]) == 0
    bundle = load_bundle(out)
    assert bundle.vocoder is None and bundle.config.vocoder is None and not (out / "vocoder.safetensors").exists()
    for x, y in zip(_outputs(load_bundle(debug_model))[:4], _outputs_no_vocoder(bundle), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    obj = import_legacy_pt(dif)
    obj["config"]["vocoder"] = None
    torch.save(obj, dif)
    capsys.readouterr()
    assert main(["import", str(dif), "--vae", str(vae), "--vocoder", str(voc), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{dif.name}: its config has no vocoder; drop --vocoder" in err[0], err
    assert not (tmp_path / "x").exists()


def _outputs_no_vocoder(bundle) -> list[torch.Tensor]:
    torch.manual_seed(0)
    mel = torch.randn(1, 128, 173) - 5
    z = bundle.vae.encode(mel)
    cond = bundle.text(torch.tensor([[1, 2, 0, 0]]))
    return [z, bundle.vae.decode(z, 173), cond, bundle.unet(z, torch.tensor([500.0]), cond)]


@pytest.mark.parametrize("count", ["lots", None, [3]])
def test_import_names_vocab_counts_that_are_no_integers(debug_model: Path, tmp_path: Path, count: object) -> None:
    """A vocab dict whose counts are text or None is a CheckpointError naming the file (ValueError / TypeError)."""
    dif, vae, voc = _legacy_files(debug_model, tmp_path)
    obj = import_legacy_pt(dif)
    obj["vocab"] = {"kick": count}
    torch.save(obj, dif)
    with pytest.raises(CheckpointError, match=f"^{dif.name}: vocab counts must be integers"):
        convert_legacy(dif, vae, voc, tmp_path / "imported")


def test_import_into_a_link_to_an_empty_folder(debug_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """--out a symbolic link to an empty folder writes the model into that folder and keeps the link (OSError:
    Cannot call rmtree on a symbolic link); a link to nothing is a one-line error."""
    dif, vae, voc = _legacy_files(debug_model, tmp_path)
    (tmp_path / "real").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real", target_is_directory=True)
    assert main(["import", str(dif), "--vae", str(vae), "--vocoder", str(voc), "--out", str(link)]) == 0
    assert link.is_symlink() and (tmp_path / "real" / "unet.safetensors").is_file()
    assert load_bundle(link).vocoder is not None
    assert main(["import", str(dif), "--vae", str(vae), "--out", str(link)]) == 2
    assert "not empty" in capsys.readouterr().err
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere", target_is_directory=True)
    assert main(["import", str(dif), "--vae", str(vae), "--out", str(dangling)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a symbolic link to no folder" in err[0] and not (tmp_path / "nowhere").exists()


class Payload:
    """Unpickling it would call print: code a weights_only load must refuse to run."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("ran",))


def test_import_refusal_is_one_fixed_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file holding objects says so in one sentence of ours (torch's text was cut mid-advice to load it unsafely,
    with ANSI codes, and a protocol-4 pickle printed torch's UserWarning first); a zip or a pickle that torch.save
    did not write is 'corrupt or not a torch.save file', not 'holds pickled objects'."""
    import pickle
    import warnings
    import zipfile

    zipped, raw4, plain_zip, raw = (tmp_path / n for n in ("evil.pt", "evil4.pt", "plain.zip", "raw.pt"))
    torch.save({"config": {}, "evil": Payload()}, zipped)
    raw4.write_bytes(pickle.dumps({"evil": Payload()}, protocol=4))
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("hello.txt", "hi")
    raw.write_bytes(pickle.dumps({"config": {}}, protocol=2))
    for file, problem in ((zipped, "holds objects other than tensors; refused, not executed"),
                          (raw4, "holds objects other than tensors; refused, not executed"),
                          (plain_zip, "corrupt or not a torch.save file"), (raw, "corrupt or not a torch.save file")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(CheckpointError) as info:
                import_legacy_pt(file)
        message = str(info.value)
        assert message.startswith(f"{file.name}: {problem}") and caught == [], (message, caught)
        assert "\x1b" not in message and "weights_only` set to `False" not in message and "\n" not in message
    assert main(["import", str(raw4), "--vae", str(raw4), "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert "ran" not in out and len(err.strip().splitlines()) == 1 and "UserWarning" not in err, err
