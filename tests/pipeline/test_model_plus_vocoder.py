"""``MODEL+VOCODER``: a model string naming another vocoder, wherever a model string goes: its resolution, generate,
kit, the Python API, sweep, vocab and inspect, and the refusal of a vocoder chosen twice."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import sampleforge
from sampleforge.audio.io import read_metadata
from sampleforge.backends import BackendOptions, load_backend
from sampleforge.backends.resolve import resolve
from sampleforge.bundle import model_id
from sampleforge.cli import main
from sampleforge.errors import CheckpointError, UserInputError
from sampleforge.pipeline import Generator


def test_a_model_string_resolves_whole_or_at_its_last_plus(model_without_vocoder: Path, debug_vocoder: Path,
                                                            tmp_path: Path) -> None:
    base = model_without_vocoder
    plain = resolve(str(base))
    assert plain.path == base and not plain.names_vocoder and plain.components is None
    ref = resolve(f"{base}+{debug_vocoder}")
    assert (ref.path, ref.format, ref.vocoder, ref.griffin_lim) == (base, "sampleforge", debug_vocoder, False)
    assert ref.components == {"vocoder": debug_vocoder / "vocoder.safetensors"}
    gl = resolve(f"{base}+griffin-lim")
    assert gl.path == base and gl.griffin_lim and gl.components == {"vocoder": None}
    shipped = resolve("drums-v2+drums-vocoder-v1")  # shipped names on both sides (resolved, not loaded)
    assert shipped.path.name == "drums-v2" and shipped.vocoder is not None and shipped.vocoder.name == "drums-vocoder-v1"
    # a folder whose name holds '+' is a model as it is; a '+' after it names the vocoder
    plus = shutil.copytree(base, tmp_path / "kick+snare")
    assert resolve(str(plus)).path == plus and not resolve(str(plus)).names_vocoder
    both = resolve(f"{plus}+{debug_vocoder}")
    assert both.path == plus and both.vocoder == debug_vocoder


def test_a_bad_model_plus_vocoder_is_one_line_naming_it(debug_model: Path, model_without_vocoder: Path,
                                                        debug_vocoder: Path, tmp_path: Path) -> None:
    base = model_without_vocoder
    ckpt = tmp_path / "other.ckpt"
    ckpt.write_bytes(b"not read")
    cases = {
        f"{base}+{debug_model}": "is a model folder, not a vocoder folder",
        f"{base}+{tmp_path / 'missing'}": "no vocoder",
        f"{base}+nope-vocoder": "no vocoder 'nope-vocoder'; after the '+' give a vocoder folder or name",
        f"{ckpt}+griffin-lim": "only sampleforge models take a vocoder",
        "hf:someone/model+griffin-lim": "only sampleforge models take a vocoder",
        f"{tmp_path / 'missing'}+griffin-lim": "no such model folder",
        f"{debug_vocoder}+griffin-lim": "is a vocoder folder, not a model",
        f"{base}+": "expected MODEL+VOCODER",
    }
    for spec, needle in cases.items():
        with pytest.raises(CheckpointError, match=re.escape(needle)) as exc:
            resolve(spec)
        assert str(exc.value).startswith(spec) and "\n" not in str(exc.value), spec


def test_generate_with_model_plus_vocoder_is_generate_with_the_vocoder_flag(
        debug_model: Path, model_without_vocoder: Path, debug_vocoder: Path, tmp_path: Path, capsys) -> None:
    """The same waveform and the same id in the file as --vocoder-ckpt / --no-vocoder, through both ways the
    command loads a model (the cached reference API, and the backend with --device)."""
    base = model_without_vocoder
    runs = {
        "spec": ["--model", f"{base}+{debug_vocoder}"],
        "spec on cpu": ["--model", f"{base}+{debug_vocoder}", "--device", "cpu"],
        "flag": ["--model", str(base), "--vocoder-ckpt", str(debug_vocoder)],
        "plain": ["--model", str(base)],
        "griffin-lim": ["--model", f"{debug_model}+griffin-lim"],
        "no vocoder": ["--model", str(debug_model), "--no-vocoder"],
        "own vocoder": ["--model", str(debug_model)],
    }
    made = {}
    for label, args in runs.items():
        out = tmp_path / f"{label}.wav"
        assert main(["generate", *args, "--prompt", "kick", "--steps", "2", "--seed", "4", "--quiet",
                     "--output", str(out)]) == 0, capsys.readouterr().err
        made[label] = sf.read(str(out))[0], read_metadata(out)["model"]
    spliced = f"{model_id(base)}+{model_id(debug_vocoder)}"
    for label in ("spec", "spec on cpu"):
        np.testing.assert_array_equal(made[label][0], made["flag"][0])
        assert made[label][1] == spliced
    assert made["flag"][1] == spliced and made["plain"][1] == model_id(base)
    assert not np.allclose(made["spec"][0], made["plain"][0])
    np.testing.assert_array_equal(made["griffin-lim"][0], made["no vocoder"][0])
    assert made["griffin-lim"][1] == made["no vocoder"][1] == f"{model_id(debug_model)}+griffin-lim"
    assert not np.allclose(made["griffin-lim"][0], made["own vocoder"][0])


def test_vary_and_morph_take_model_plus_vocoder(model_without_vocoder: Path, debug_vocoder: Path, tmp_path: Path,
                                                capsys) -> None:
    base = model_without_vocoder
    snare = tmp_path / "snare.wav"
    assert main(["generate", "--model", str(base), "--prompt", "snare", "--steps", "2", "--seed", "3", "--quiet",
                 "--output", str(snare)]) == 0
    capsys.readouterr()
    common = ["--steps", "2", "--seed", "5", "--quiet"]
    made = {}
    for label, model in {"spec": ["--model", f"{base}+{debug_vocoder}"],
                         "flag": ["--model", str(base), "--vocoder-ckpt", str(debug_vocoder)]}.items():
        assert main(["vary", *model, *common, "--input", str(snare), "--out-dir", str(tmp_path / label)]) == 0
        assert main(["morph", *model, *common, "--from-prompt", "kick", "--to-prompt", "snare", "--morph-steps", "2",
                     "--out-dir", str(tmp_path / label / "morph")]) == 0
        files = capsys.readouterr().out.split()
        assert len(files) == 3
        made[label] = [(sf.read(f)[0], read_metadata(f)["model"]) for f in files]
    for (a, id_a), (b, id_b) in zip(made["spec"], made["flag"], strict=True):
        np.testing.assert_array_equal(a, b)
        assert id_a == id_b == f"{model_id(base)}+{model_id(debug_vocoder)}"


def test_python_api_takes_model_plus_vocoder(model_without_vocoder: Path, debug_vocoder: Path, tmp_path: Path) -> None:
    base = model_without_vocoder
    spec = f"{base}+{debug_vocoder}"
    kw = dict(prompt="snare", ddim_steps=2, seed=2)
    a = sampleforge.generate(model=spec, output_path=tmp_path / "a.wav", **kw)
    b = sampleforge.generate(model=str(base), vocoder_checkpoint=debug_vocoder, output_path=tmp_path / "b.wav", **kw)
    np.testing.assert_array_equal(sf.read(str(a))[0], sf.read(str(b))[0])
    assert read_metadata(a)["model"] == read_metadata(b)["model"] == f"{model_id(base)}+{model_id(debug_vocoder)}"
    kit = sampleforge.make_kit(tmp_path / "kit", prompt="808", pieces=["kick"], steps=2, seed=1, model=spec)
    assert read_metadata(kit / "kick.wav")["model"].endswith(f"+{model_id(debug_vocoder)}")
    # the name a server lists: the model's, and the vocoder's as the spec spells it; a plain model's is unchanged
    gen = Generator.from_pretrained(spec)
    assert gen.name == "debug+a-vocoder" and gen.bundle.vocoder is not None
    assert load_backend(spec, BackendOptions(device="cpu")).name == "debug+a-vocoder"
    assert load_backend(f"{base}+griffin-lim", BackendOptions(device="cpu")).name == "debug+griffin-lim"
    assert Generator.from_pretrained(base).name == "debug"


def test_a_vocoder_chosen_twice_is_refused(model_without_vocoder: Path, debug_vocoder: Path, tmp_path: Path,
                                           capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec with --vocoder-ckpt or --no-vocoder (Python: vocoder_checkpoint=, vocoder=, components=) is a
    one-line error naming both, before anything is made."""
    monkeypatch.chdir(tmp_path)
    spec = f"{model_without_vocoder}+{debug_vocoder}"
    for flags in (["--vocoder-ckpt", str(debug_vocoder)], ["--no-vocoder"]):
        for command in (["generate", "--prompt", "kick"], ["kit", "--out-dir", str(tmp_path / "k")]):
            rc = main([*command, "--model", spec, *flags, "--steps", "1", "--quiet"])
            err = capsys.readouterr().err.strip()
            assert rc == 2 and len(err.splitlines()) == 1, err
            assert f"--model {spec} and {flags[0]} contradict each other" in err
    assert not (tmp_path / "k").exists() and not (tmp_path / "generations").exists()
    with pytest.raises(UserInputError, match=re.escape(f"model {spec} and vocoder_checkpoint= contradict")):
        sampleforge.generate(model=spec, vocoder_checkpoint=None, prompt="kick", ddim_steps=1)
    with pytest.raises(UserInputError, match=re.escape(f"model {spec} and vocoder= contradict")):
        sampleforge.make_kit(tmp_path / "k2", model=spec, vocoder=False, pieces=["kick"], steps=1)
    with pytest.raises(UserInputError, match="components="):
        Generator.from_pretrained(spec, components={"vocoder": None})


def test_sweep_vocab_and_inspect_take_model_plus_vocoder(debug_model: Path, model_without_vocoder: Path,
                                                         debug_vocoder: Path, tmp_path: Path, capsys) -> None:
    spec = f"{debug_model}+griffin-lim"
    out = tmp_path / "sweep"
    assert main(["sweep", "--model", spec, "--prompt", "kick", "--cfg", "1", "--steps", "1", "--sampler", "ddim",
                 "--seed", "1", "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads((out / "sweep.json").read_text())["model_id"] == f"{model_id(debug_model)}+griffin-lim"
    capsys.readouterr()
    assert main(["vocab", "--model", spec, "--json"]) == 0
    with_gl = json.loads(capsys.readouterr().out)
    assert main(["vocab", "--model", str(debug_model), "--json"]) == 0
    assert with_gl == json.loads(capsys.readouterr().out)  # the model's keywords
    rc = main(["inspect", f"{model_without_vocoder}+{debug_vocoder}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"the sampleforge model {model_without_vocoder} with the vocoder {debug_vocoder}" in err
