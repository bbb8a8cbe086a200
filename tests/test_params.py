"""GenerationParams: one declaration per setting, from which the CLI, the Python API and the HTTP schemas derive."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pytest

from sampleforge.cli import main
from sampleforge.errors import UserInputError
from sampleforge.params import (
    DEFAULTS,
    SPECS,
    GenerationParams,
    ParamError,
    add_arguments,
    from_namespace,
    parse_list,
)
from sampleforge.serve.schemas import TASK_FIELDS, GenerateRequest, TaskParams


def _parse(argv: list[str]) -> GenerationParams:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return from_namespace(parser.parse_args(argv))


def test_defaults_are_valid_and_every_setting_has_help() -> None:
    assert GenerationParams() == DEFAULTS
    for spec in SPECS.values():
        assert spec.help and spec.kind in (int, float, str)
        assert spec.check(spec.default) == spec.default


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.kind is not str])
def test_numeric_bounds_are_enforced(name: str) -> None:
    spec = SPECS[name]
    low = spec.ge if spec.ge is not None else spec.gt
    assert low is not None and spec.le is not None  # every number is bounded on both sides
    for bad in (spec.le + 1, low - 1, math.nan, math.inf, True, "3"):
        with pytest.raises(ParamError, match=f"^{name} must be"):
            GenerationParams(**{name: bad})
    if spec.ge is not None:
        assert getattr(GenerationParams(**{name: spec.ge}), name) == spec.ge
    assert getattr(GenerationParams(**{name: spec.le}), name) == spec.le


def test_aliases_and_the_callers_names_in_errors() -> None:
    assert GenerationParams.from_kwargs({"ddim_steps": 7, "n": 2}) == GenerationParams(steps=7, count=2)
    with pytest.raises(ParamError, match="^ddim_steps must be an integer between 1 and 1000"):
        GenerationParams.from_kwargs({"ddim_steps": 5000})
    with pytest.raises(UserInputError, match="both set steps"):
        GenerationParams.from_kwargs({"ddim_steps": 5, "steps": 6})
    with pytest.raises(UserInputError, match="unknown generation setting 'cfg'"):
        GenerationParams.from_kwargs({"cfg": 5})


def test_cli_flags_derive_from_the_declarations() -> None:
    p = _parse(["--cfg-scale", "4.5", "--steps", "12", "--eta", "0.5", "--steps-offset", "1", "--flow-shift", "3",
                "--sampler", "heun", "--seed", "9", "--count", "2", "--format", "flac", "--precision", "bf16"])
    assert p == GenerationParams(cfg_scale=4.5, steps=12, eta=0.5, steps_offset=1, flow_shift=3.0, sampler="heun",
                                 seed=9, count=2, format="flac", precision="bf16")
    assert _parse([]) == DEFAULTS
    for argv, flag in [(["--cfg-scale", "50"], "--cfg-scale"), (["--steps", "x"], "--steps"),
                       (["--steps-offset", "-1"], "--steps-offset"), (["--sampler", "nope"], "--sampler")]:
        with pytest.raises(ParamError, match=f"^{flag} must be"):
            _parse(argv)


def test_a_param_error_is_spelled_with_the_flags() -> None:
    """The CLI names every setting an error names by its flag (``spelled``); unknown names stay as they are."""
    exc = ParamError("steps_offset", "applies to DDPM models; a flow model takes flow_shift", mentions=("flow_shift",))
    assert str(exc) == "steps_offset applies to DDPM models; a flow model takes flow_shift"
    flags = {"steps_offset": "--steps-offset", "flow_shift": "--flow-shift"}
    assert str(exc.spelled(flags)) == "--steps-offset applies to DDPM models; a flow model takes --flow-shift"
    assert str(ParamError("init_audio", ": not taken").spelled({})) == "init_audio: not taken"


def test_list_flags() -> None:
    assert parse_list("1, 3,5", "steps") == [1, 3, 5]
    with pytest.raises(ParamError, match="^--cfg-scale must be"):
        parse_list("1,x", "cfg_scale")
    with pytest.raises(ParamError, match="^--steps expects"):
        parse_list(",", "steps")


def test_a_bad_flag_fails_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the model does not exist: reaching the loader would print "no such model folder" instead
    assert main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "kick", "--cfg-scale", "50"]) == 2
    err = capsys.readouterr().err
    assert "--cfg-scale must be a finite number between 0 and 30" in err and "model" not in err


def test_http_schema_fields_derive_from_the_declarations() -> None:
    schema = GenerateRequest.model_json_schema()["properties"]
    http = [name for name, spec in SPECS.items() if spec.http]
    assert sorted(schema) == sorted(http)
    steps, cfg = schema["steps"], schema["cfg_scale"]
    number = [next(x for x in f["anyOf"] if x["type"] != "null") for f in (steps, cfg)]  # None: the model's own
    assert (number[0]["minimum"], number[0]["maximum"], steps["default"]) == (SPECS["steps"].ge, SPECS["steps"].le,
                                                                              None)
    assert (number[1]["minimum"], number[1]["maximum"]) == (SPECS["cfg_scale"].ge, SPECS["cfg_scale"].le)
    req = GenerateRequest.model_validate({"prompt": "kick", "steps": 7})
    assert req.to_params() == GenerationParams(prompt="kick", steps=7)
    with pytest.raises(ValueError, match="sampler must be one of"):
        GenerateRequest.model_validate({"prompt": "kick", "sampler": "nope"})


def test_task_params_use_the_task_names() -> None:
    assert TASK_FIELDS["steps"] == "diffusionSteps" and TASK_FIELDS["cfg_scale"] == "guidanceScale"
    task = TaskParams.model_validate({"diffusionSteps": 9, "guidanceScale": 2.5})
    assert task.settings()["steps"] == 9 and task.settings()["cfg_scale"] == 2.5
    with pytest.raises(ValueError, match="diffusionSteps"):
        TaskParams.model_validate({"diffusionSteps": 5000})


def test_settings_are_immutable_and_revalidated_on_replace() -> None:
    p = GenerationParams(steps=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.steps = 6  # type: ignore[misc]
    with pytest.raises(ParamError, match="^steps"):
        dataclasses.replace(p, steps=0)
    assert p.with_seed().seed is not None and GenerationParams(seed=4).with_seed().seed == 4


def test_a_seed_must_leave_room_for_its_clips() -> None:
    from sampleforge.params import MAX_SEED, random_seed

    assert GenerationParams(seed=MAX_SEED - 3, count=4).seed == MAX_SEED - 3
    with pytest.raises(ParamError, match=f"^seed must leave room for its 4 clips .* at most {MAX_SEED - 3}, got"):
        GenerationParams(seed=MAX_SEED - 2, count=4)
    with pytest.raises(ParamError, match="^seed must leave room for its 2 clips"):
        GenerationParams.from_kwargs({"seed": MAX_SEED, "n": 2})
    assert all(GenerationParams(count=1000).with_seed().seed + 999 <= MAX_SEED for _ in range(200))
    assert 0 <= random_seed(MAX_SEED + 1) <= 0
    from sampleforge.backends.base import batch  # every backend's batch: a seed per clip of every prompt

    assert batch(GenerationParams(seed=MAX_SEED - 2), ["kick", "snare", "clap"]).seeds[-1] == MAX_SEED
    with pytest.raises(ParamError, match="^seed must leave room for its 3 clips"):
        batch(GenerationParams(seed=MAX_SEED - 1), ["kick", "snare", "clap"])
