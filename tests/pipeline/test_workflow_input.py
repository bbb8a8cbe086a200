"""The workflow's Python API (sampleforge.vary, morph, make_kit) given other models and odd inputs: a file name per
model, each morph clip's own guidance scale on record, names that do not change from run to run, and a wrong type
refused naming its argument before any model work."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

import sampleforge
from sampleforge.audio.io import read_metadata
from sampleforge.errors import ParamError, UserInputError
from sampleforge.pipeline import Generator, MorphEnd

FAST = {"steps": 1, "morph_steps": 2}


@pytest.fixture(scope="module")
def snare_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A decaying noise burst: a sample of the user's to vary."""
    t = np.arange(22050) / 44100
    wav = (np.random.default_rng(0).standard_normal(t.size) * np.exp(-t * 30) * 0.5).astype(np.float32)
    out = tmp_path_factory.mktemp("in") / "my_snare.wav"
    sf.write(out, wav, 44100)
    return out


@pytest.fixture(scope="module")
def firm_plain_model(knob_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The knob model guiding a prompt that sets no knob at 4.5 ("kick") and one that does at 3 ("long kick")."""
    from tests.model_folders import edited_copy

    return edited_copy(knob_model, tmp_path_factory.mktemp("models") / "firm",
                       lambda c: c["diffusion"].update(cfg_scale_no_knobs=4.5))


def test_a_variation_by_another_model_is_another_file(debug_model: Path, listening_model: Path, snare_file: Path,
                                                       tmp_path: Path) -> None:
    """The same sample, seed and settings varied by two models give two files (the second wrote over the first);
    the model given by name or loaded as the generator gives the same one."""
    kw: dict[str, Any] = {"strength": 0.3, "seed": 1, "steps": 1, "out_dir": tmp_path}
    (first,) = sampleforge.vary(snare_file, model=debug_model, **kw)
    kept = first.read_bytes()
    (other,) = sampleforge.vary(snare_file, model=listening_model, **kw)
    gen = Generator.from_pretrained(listening_model)
    (loaded,) = sampleforge.vary(snare_file, generator=gen, **kw)
    assert other != first and loaded == other and first.read_bytes() == kept
    assert read_metadata(first)["model"] != read_metadata(other)["model"] == gen.id
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


def test_a_generator_and_a_model_together_are_refused(debug_model: Path, snare_file: Path, tmp_path: Path) -> None:
    gen = Generator.from_pretrained(debug_model)
    with pytest.raises(ParamError, match=r"^model: give the model or a loaded generator, not both"):
        sampleforge.vary(snare_file, generator=gen, model=debug_model, steps=1, out_dir=tmp_path / "v")
    with pytest.raises(ParamError, match=r"^model: give the model or a loaded generator, not both"):
        sampleforge.morph(MorphEnd("kick", 1), MorphEnd("snare", 2), generator=gen, model="drums-v1",
                          out_dir=tmp_path / "m", **FAST)
    assert not (tmp_path / "v").exists() and not (tmp_path / "m").exists()


def test_each_morph_file_records_the_scale_it_was_rendered_at(firm_plain_model: Path, tmp_path: Path) -> None:
    """Ends guided at 4.5 ("kick") and 3 ("long kick"): each file says its own scale (they all said the settings'
    prompt's, 4.5), and the file's scale renders its clip again."""
    gen = Generator.from_pretrained(firm_plain_model)
    files = sampleforge.morph(MorphEnd("kick", 3), MorphEnd("long kick", 4), generator=gen, steps=1, morph_steps=3,
                              out_dir=tmp_path, vocoder=False)
    assert [read_metadata(f)["cfg_scale"] for f in files] == ["4.5", "3.75", "3.0"]
    last = gen.generate("long kick", steps=1, seed=4, vocoder=False,
                        cfg_scale=float(read_metadata(files[-1])["cfg_scale"]))[0].numpy()
    np.testing.assert_allclose(sf.read(files[-1], dtype="float32")[0], last, atol=1e-4)
    same = sampleforge.morph(MorphEnd("kick", 3), MorphEnd("snare", 4), generator=gen, steps=1, morph_steps=3,
                             out_dir=tmp_path / "same", vocoder=False)
    assert [read_metadata(f)["cfg_scale"] for f in same] == ["4.5"] * 3  # one scale at both ends


def test_morph_names_stay_when_both_ends_name_their_seeds(debug_model: Path, tmp_path: Path) -> None:
    """No seed= but both ends' seeds: the same clips get the same names again (a random seed that no clip uses
    made new ones every run); the ends' seeds still tell names apart."""
    def run(a_seed: int) -> list[str]:
        return [p.name for p in sampleforge.morph(MorphEnd("kick", a_seed), MorphEnd("snare", 9), model=debug_model,
                                                  out_dir=tmp_path, **FAST)]

    first = run(3)
    assert run(3) == first and run(4) != first
    assert len(list(tmp_path.iterdir())) == 4


def test_numpy_int_seeds_are_taken(debug_model: Path, tmp_path: Path) -> None:
    files = sampleforge.morph(MorphEnd("kick", np.int64(3)), MorphEnd("snare", np.int32(9)), model=debug_model,
                              out_dir=tmp_path / "m", **FAST)
    assert read_metadata(files[0])["seed"] == "3 -> 9"
    out = sampleforge.make_kit(tmp_path / "k", model=debug_model, pieces="kick", steps=1, seed=1,
                               pad_seeds={"kick": np.int64(5)})
    assert [s["seed"] for s in json.loads((out / "kit.json").read_text())["samples"]] == [5]


def _no_model_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sampleforge.api.load_generator", lambda *a, **k: pytest.fail("the model loaded"))
    for name in ("morph", "vary", "run", "render", "resolve"):
        monkeypatch.setattr(Generator, name, lambda *a, **k: pytest.fail("the model worked"))


@pytest.mark.parametrize("call, needle", [
    (lambda o, s, g: sampleforge.morph(MorphEnd(None, 1), MorphEnd("snare", 2), out_dir=o, **FAST),  # type: ignore[arg-type]
     "a.prompt must be a text"),
    (lambda o, s, g: sampleforge.morph(MorphEnd("kick", 1), MorphEnd(["snare"], 2), out_dir=o, **FAST),  # type: ignore[arg-type]
     "b.prompt must be a text"),
    (lambda o, s, g: sampleforge.morph("kick", "snare", out_dir=o, **FAST),  # type: ignore[arg-type]
     "a: a MorphEnd (MorphEnd('kick', 1)), got str 'kick'"),
    (lambda o, s, g: sampleforge.morph(MorphEnd("kick", 1), MorphEnd("snare", -1), out_dir=o, **FAST),
     "b.seed must be an integer between 0 and 2147483647, got -1"),
    (lambda o, s, g: sampleforge.morph(MorphEnd("kick", 1.5), MorphEnd("snare"), out_dir=o, **FAST),  # type: ignore[arg-type]
     "a.seed must be an integer"),
    (lambda o, s, g: sampleforge.vary(np.zeros(100), out_dir=o, steps=1),  # type: ignore[arg-type]
     "input: a file path, got ndarray (for samples in memory use Generator.vary)"),
    (lambda o, s, g: sampleforge.vary(torch.zeros(100), out_dir=o, steps=1),  # type: ignore[arg-type]
     "input: a file path, got Tensor"),
    (lambda o, s, g: sampleforge.vary(s, generator="drums-v2", out_dir=o, steps=1),  # type: ignore[arg-type]
     "generator: a loaded Generator (Generator.from_pretrained(...)), got str 'drums-v2'"),
    (lambda o, s, g: sampleforge.morph(MorphEnd("kick"), MorphEnd("snare"), generator=g, vocoder="x", out_dir=o,
                                       **FAST), "vocoder: give a vocoder folder or name with the model"),
    (lambda o, s, g: sampleforge.make_kit(o, pieces="kick", steps=1, pad_seeds={"kick": -5}),
     "pad_seeds['kick'] must be an integer between 0 and 2147483647, got -5"),
    (lambda o, s, g: sampleforge.make_kit(o, pieces="kick", steps=1, pad_seeds={"kick": None}),
     "pad_seeds['kick'] must be an integer between 0 and 2147483647, got None"),
    (lambda o, s, g: sampleforge.make_kit(o, pieces="kick", steps=1, pad_seeds={"kick": "5"}),
     "pad_seeds['kick'] must be an integer"),
    (lambda o, s, g: sampleforge.make_kit(o, pieces="kick", steps=1, pad_seeds=[("kick", 5)]),  # type: ignore[arg-type]
     "pad_seeds: a dict of seeds by piece ({'snare': 7}), got list"),
    (lambda o, s, g: sampleforge.make_kit(o, pieces="kick", steps=1, generator="drums-v2"),  # type: ignore[arg-type]
     "generator: a loaded Generator"),
])
def test_a_wrong_type_is_refused_naming_its_argument(debug_model: Path, snare_file: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, call: Any, needle: str) -> None:
    """Before a model loads or works, and before the output folder is made (they crashed deep inside: TypeError,
    AttributeError, a file name too long)."""
    gen = Generator.from_pretrained(debug_model)
    _no_model_work(monkeypatch)
    with pytest.raises(UserInputError, match="^" + re.escape(needle)):
        call(tmp_path / "out", snare_file, gen)
    assert not (tmp_path / "out").exists()


def test_workflow_warnings_reach_python_without_a_callback(debug_model: Path, snare_file: Path,
                                                           tmp_path: Path) -> None:
    from sampleforge.errors import GenerationWarning

    with pytest.warns(GenerationWarning, match="unknown keyword 'kik'"):
        sampleforge.vary(snare_file, prompt="kik", model=debug_model, steps=1, seed=1, out_dir=tmp_path)
    told: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a callback takes them instead
        sampleforge.vary(snare_file, prompt="kik", model=debug_model, steps=1, seed=1, out_dir=tmp_path / "b",
                         warn=told.append)
    assert any("kik" in line for line in told)
