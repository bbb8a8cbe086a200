"""`sampleforge generate` and `sampleforge vocab` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from sampleforge.cli import main


def test_generate_count_and_out_dir(
    debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        [
            "generate",
            "--model",
            str(debug_model),
            "--prompt",
            "kick zorblax",
            "--steps",
            "2",
            "--count",
            "3",
            "--seed",
            "5",
            "--out-dir",
            str(tmp_path),
            "--quiet",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0
    files = [Path(line) for line in out.split()]
    assert len(files) == 3 and all(f.is_file() and f.parent == tmp_path for f in files)
    assert "zorblax" in err and "warning" in err
    assert sf.info(str(files[0])).frames == 88200


def test_generate_output_and_no_vocoder(debug_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    assert (
        main(
            [
                "generate",
                "--model",
                str(debug_model),
                "--prompt",
                "snare",
                "--steps",
                "2",
                "--seed",
                "1",
                "--output",
                str(out),
                "--no-vocoder",
                "--quiet",
            ]
        )
        == 0
    )
    assert out.is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--steps", "-3"], "--steps"),
        (["--cfg-scale", "nan"], "--cfg-scale"),
        (["--count", "0"], "--count"),
        (["--sampler", "bogus"], "sampler"),
        (["--output", "/proc/nope/x.wav"], "cannot write"),
    ],
)
def test_generate_bad_values_exit_2_one_line(debug_model: Path, args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sampleforge.cli",
            "generate",
            "--model",
            str(debug_model),
            "--prompt",
            "kick",
            "--quiet",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_unknown_model_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "kick"]) == 2
    assert "no such model folder" in capsys.readouterr().err
    for argv in (["generate", "kick", "--model", " "], ["inspect", ""], ["eval", "knob-limits", "--model", ""],
                 ["vocab", "--model", ""], ["demo", "--model", "", "--out", str(tmp_path / "pack")]):
        assert main(argv) == 2  # not the working directory, nor the folder of the shipped weights
        err = capsys.readouterr().err
        assert "no model named" in err and "known: " in err and "weights" not in err, err


def test_an_error_names_the_sub_command_as_typed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "scan", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("sampleforge data scan: error: no such folder")


def test_vocab(debug_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vocab", "--model", str(debug_model)]) == 0
    out = capsys.readouterr().out
    assert "kick" in out and "10" in out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["morph", "--from-seed", "abc"], "--from-seed: invalid int value: 'abc'"),
        (["import"], "the following arguments are required: diffusion, --vae, --out"),
        (["serve", "--ttl-hours", "abc"], "--ttl-hours: must be a positive number, got abc"),
        (["serve", "--token", "a", "--token-file", "b"], "not allowed with argument --token"),
        (["eval", "score-classifier"], "required: --classifier"),
        (["doctor", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_naming_the_command(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flag argparse refuses is one line (no usage block), naming the command and where its help is."""
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], lines
    command = " ".join(a for a in argv[:2] if not a.startswith("-"))
    assert lines[0].startswith(f"sampleforge {command}: error: ") and f"sampleforge {command} --help" in lines[0]


@pytest.mark.parametrize("words", [["punchy 808 kick"], ["punchy", "808", "kick"]])
def test_generate_takes_the_prompt_as_words(
    debug_model: Path, tmp_path: Path, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`sampleforge generate punchy 808 kick`: the words after the command are the prompt, as --prompt."""
    from sampleforge.audio.io import read_metadata

    out = tmp_path / "x.wav"
    rc = main(["generate", *words, "--model", str(debug_model), "--steps", "2", "--output", str(out), "--quiet"])
    assert rc == 0 and read_metadata(out)["prompt"] == "punchy 808 kick"
    capsys.readouterr()
    rc = main(["generate", "punchy 808 kick", "--prompt", "punchy 808 kick", "--model", str(debug_model), "--steps",
               "2", "--output", str(tmp_path / "y.wav"), "--quiet"])
    assert rc == 0  # the same prompt twice is no contradiction


def test_generate_prompt_words_and_another_prompt_flag_refused(
    debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["generate", "snare", "--prompt", "kick", "--model", str(debug_model), "--output",
               str(tmp_path / "x.wav")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--prompt 'kick' and the prompt 'snare' differ" in err[0]
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("device, needle", [("gpu", "not a device name"), ("cuda:7", "cuda"), ("ipu", "cpu, cuda or mps")])
def test_generate_bad_device_one_line(
    debug_model: Path, tmp_path: Path, device: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt --device, or a GPU this machine lacks, is a one-line error (a torch traceback before)."""
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    rc = main(["generate", "kick", "--model", str(debug_model), "--device", device, "--output", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"device '{device}'" in err[0] and needle in err[0], err


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--per-class", "1", "--out-dir", "{file}"],
        ["data", "debian", "--out", "{file}"],
        ["import", "{file}", "--vae", "{file}", "--out", "{file}"],
        ["sweep", "kick", "--steps", "1", "--cfg-scale", "1", "--sampler", "ddim", "--out", "{file}"],
        ["generate", "kick", "--out-dir", "{file}"],
        ["generate", "kick", "--output", "{file}/x.wav"],
        ["data", "synth", "--out", "{file}"],
    ],
)
def test_an_output_folder_that_is_a_file_is_one_line(
    debug_model: Path, tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder flag naming an existing file: one line saying so (a FileExistsError/NotADirectoryError traceback
    before), and the file is left as it was."""
    file = tmp_path / "take.wav"
    file.write_bytes(b"RIFF keep me")
    argv = [a.replace("{file}", str(file)) for a in argv]
    if argv[0] in ("demo", "sweep", "generate"):
        argv += ["--model", str(debug_model)]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"{file} is a file, not a folder" in err[0], err
    assert file.read_bytes() == b"RIFF keep me"


def test_serve_port_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before any model loads (an OverflowError traceback from bind() after loading, before)."""
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port: must be between 0 and 65535, got 70000" in capsys.readouterr().err


@pytest.mark.parametrize("host, needle", [
    ("no-such-host.invalid", "--host no-such-host.invalid: cannot resolve it"),
    ("192.0.2.1", "--host 192.0.2.1: 192.0.2.1 is not an address of this machine"),  # TEST-NET-1: nobody's
    ("127.0.0.1", "already in use on 127.0.0.1"),  # the port, below: taken
])
def test_serve_refuses_a_host_or_port_it_cannot_listen_on_before_loading(
    host: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line and exit 2, as for a port out of range, before any model loads (exit 3 after loading, before)."""
    import socket

    import sampleforge.serve.commands as serve_commands

    monkeypatch.setattr(serve_commands, "load_generator", lambda *a, **k: pytest.fail("the model loaded"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["serve", "--host", host, "--port", port, "--storage", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_generate_auto_names_differ_with_the_settings(
    debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same prompt and seed with another sampler, knob, duration or format is another file, not an overwrite of
    the first; the same settings again are the same name (and a name of default settings is as it was)."""
    from sampleforge.api import auto_name
    from sampleforge.bundle import model_id

    base = ["generate", "kick", "--model", str(debug_model), "--steps", "2", "--seed", "1", "--out-dir", str(tmp_path),
            "--quiet"]
    made = []
    for extra in ([], ["--sampler", "euler"], ["--duration", "1"], ["--decay", "0.2"], ["--format", "wav16"], []):
        assert main([*base, *extra]) == 0
        made.append(capsys.readouterr().out.strip())
    assert len(set(made[:-1])) == 5 and made[-1] == made[0]
    assert Path(made[0]).name == auto_name("kick", 1, model_id(debug_model), 2, 3.0).name


def test_generate_output_suffix(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--output kick.flac makes kick.flac, a FLAC (a WAV named kick.wav before); a suffix of a format sampleforge
    does not write, or --out-dir as well, is a one-line error before anything is made."""
    base = ["generate", "kick", "--model", str(debug_model), "--steps", "2", "--quiet"]
    assert main([*base, "--output", str(tmp_path / "kick.flac")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "kick.flac")
    assert sf.info(str(tmp_path / "kick.flac")).format == "FLAC" and not (tmp_path / "kick.wav").exists()
    for extra, needle in ((["--output", str(tmp_path / "kick.mp3")], "writes .wav or .flac"),
                          (["--output", str(tmp_path / "a.wav"), "--out-dir", str(tmp_path / "d")], "--out-dir")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kick.flac"]


def test_generate_output_ending_in_a_slash_is_a_folder(debug_model: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--output new/ is a one-line error pointing at --out-dir (a WAV file named 'new' was written)."""
    folder = f"{tmp_path / 'new'}/"
    assert main(["generate", "kick", "--model", str(debug_model), "--steps", "1", "--quiet", "--output", folder]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--output: {folder} names a folder: give a file name, or use --out-dir" in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["demo", "--per-class", "0"], "--per-class must be an integer between 1 and 1000, got 0"),
        (["demo", "--seed", "-1"], "--seed must be an integer between 0"),
        (["train", "vae", "--out", "{tmp}", "--max-minutes", "-1"], "--max-minutes: must be a positive number"),
        (["train", "vae", "--out", "{tmp}", "--max-minutes", "nan"], "--max-minutes: must be a positive number"),
        (["train", "vae", "--out", "{tmp}", "--max-steps", "-1"], "--max-steps: must be at least 0, got -1"),
        (["eval", "--model", "m", "--reference", "r", "--vocoder-clips", "-1"], "--vocoder-clips: must be at least 0, got -1"),
    ],
)
def test_numbers_that_made_no_sense_are_refused(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each named by its flag before any work (before: demo said "n must be...", train ran with a deadline
    in the past, -1 steps or a NaN deadline, eval took -1 vocoder clips as 0)."""
    assert main([a.replace("{tmp}", str(tmp_path / "run")) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "run").exists()


def test_a_stopped_training_run_names_a_command_that_continues_it() -> None:
    """The hint after a stop repeats the run's data, config, cache and step limit (it said only `--resume --out RUN`, which
    then trained on other data with configs/default.json, or failed)."""
    from sampleforge.cli import build_parser
    from sampleforge.train.commands import resume_command

    args = build_parser("train").parse_args(["train", "vae", "--data", "my kits", "other", "--config",
                                             "configs/debug.json", "--out", "run", "--max-minutes", "5", "--max-steps", "40"])
    assert resume_command(args) == ("sampleforge train vae --resume --out run --data 'my kits' other --config "
                                    "configs/debug.json --max-steps 40")
    args = build_parser("train").parse_args(["train", "all", "--out", "run"])
    assert resume_command(args) == "sampleforge train all --resume --out run"


def test_a_reader_that_goes_away_stops_the_output_quietly(debug_model: Path) -> None:
    """`sampleforge vocab | head -1`: the closed pipe ends the command without a traceback."""
    import os
    import subprocess
    import sys

    code = f"import sys; from sampleforge.cli import main; sys.exit(main(['vocab', '--model', {str(debug_model)!r}]))"
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=write, stderr=subprocess.PIPE)
    os.close(write)
    os.close(read)  # gone before the command prints (it imports first): its every write fails
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


@pytest.mark.parametrize("cli, api, typed, named", [
    (["--duration", "20"], {"duration": 20}, "--duration must be at most 10 seconds", "duration must be at most 10"),
    (["--init-audio", "x.wav"], {"init_audio": "x.wav"}, "--init-audio: sampleforge models do not take it",
     "init_audio: sampleforge models do not take it"),
    (["--mask-start", "0.5"], {"mask_start": 0.5}, "--mask-start: sampleforge models", "mask_start: sampleforge"),
    (["--steps-offset", "3"], {"steps_offset": 3}, "--steps-offset applies to the 'uniform' (leading) spacing",
     "steps_offset applies to the 'uniform' (leading) spacing"),
    (["--sampler", "flow_euler"], {"sampler": "flow_euler"}, "--sampler 'flow_euler' does not fit",
     "sampler 'flow_euler' does not fit"),
    (["--diffusion-ckpt", "nope.safetensors"], {"diffusion_checkpoint": "nope.safetensors"},
     "--diffusion-ckpt: nope.safetensors does not exist", "diffusion_checkpoint: nope.safetensors does not exist"),
])
def test_errors_of_the_model_name_the_flag_typed(
    debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cli: list[str], api: dict[str, object],
    typed: str, named: str
) -> None:
    """A setting the model refuses is named by its flag on the command line (it was the Python parameter:
    'duration must be ...' for --duration), and by its parameter in the Python API."""
    import re

    import sampleforge
    from sampleforge.errors import UserInputError

    rc = main(["generate", "kick", "--model", str(debug_model), "--steps", "1", "--out-dir", str(tmp_path), "--quiet",
               *cli])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and f"error: {typed}" in err[0], err
    with pytest.raises(UserInputError, match=f"^{re.escape(named)}"):
        sampleforge.generate(model=str(debug_model), prompt="kick", ddim_steps=1, output_path=tmp_path / "x.wav",
                             **api)


def test_errors_about_an_output_folder_name_the_flag_typed(
    debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out-dir of generate, vary, morph and kit is named so (vary, morph and generate said 'output:', kit
    'out-dir:'); the Python API names out_dir (and output_path)."""
    import sampleforge
    from sampleforge.errors import UserInputError

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep")
    snare = tmp_path / "snare.wav"
    assert main(["generate", "snare", "--model", str(debug_model), "--steps", "1", "--output", str(snare),
                 "--quiet"]) == 0
    for argv, typed in [
        (["generate", "kick", "--out-dir", "/proc/nope"], "--out-dir: cannot write to /proc/nope"),
        (["vary", str(snare), "--out-dir", "/proc/nope"], "--out-dir: cannot write to /proc/nope"),
        (["morph", "kick", "--out-dir", "/proc/nope"], "--out-dir: cannot write to /proc/nope"),
        (["kit", "kick", "--out-dir", str(tmp_path / "full")], f"--out-dir: {tmp_path / 'full'} is not empty (choose "
                                                               "a new folder, or --overwrite)"),
    ]:
        capsys.readouterr()
        assert main([*argv, "--model", str(debug_model), "--steps", "1", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"error: {typed}" in err[0], err
    with pytest.raises(UserInputError, match="^out_dir: cannot write to /proc/nope"):
        sampleforge.vary(snare, model=str(debug_model), out_dir="/proc/nope")
    with pytest.raises(UserInputError, match="^out_dir: .* is not empty .*or overwrite\\)"):
        sampleforge.make_kit(tmp_path / "full", model=str(debug_model))
    with pytest.raises(UserInputError, match="^output_path: cannot write to /proc/nope"):
        sampleforge.generate(model=str(debug_model), prompt="kick", output_path="/proc/nope/x.wav")


def test_demo_with_a_model_that_is_not_there_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A --model the user names and that cannot load is a one-line error, exit 2; it rendered synthesized drums
    and exited 0 (the fallback for a missing shipped model)."""
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(tmp_path / "nope"), "--per-class", "1", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope: no such model folder" in err[0] and not out.exists(), err


def test_generate_auto_names_a_prompt_of_long_words(debug_model: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Each word in an automatic name is cut short, so a valid prompt of long words gets a file ('File name too
    long', exit 2, before); the hash still tells such prompts apart."""
    names = []
    for word in ("a" * 300, "a" * 299 + "b"):
        assert main(["generate", "kick", word, "--model", str(debug_model), "--steps", "1", "--seed", "1", "--out-dir",
                     str(tmp_path), "--quiet"]) == 0, capsys.readouterr().err
        names.append(Path(capsys.readouterr().out.strip()).name)
    assert names[0] != names[1] and all(name.startswith("kick_" + "a" * 24 + "_") for name in names)


def test_a_file_records_every_setting_that_changes_its_sound(listening_model: Path, tmp_path: Path) -> None:
    """Two clips that differ only by eta, duration or precision differ in their metadata too, so that a file says
    how to make it again."""
    import numpy as np
    import soundfile as sf

    from sampleforge.audio.io import read_metadata

    base = ["generate", "snare", "--model", str(listening_model), "--steps", "3", "--seed", "5", "--sampler",
            "euler_ancestral", "--duration", "0.5", "--quiet"]
    metas, clips = [], []
    for extra in (["--eta", "0.5"], ["--eta", "0.9"], ["--eta", "0.5", "--duration", "0.4"],
                  ["--eta", "0.5", "--precision", "bf16"]):
        out = tmp_path / f"c{len(metas)}.wav"
        assert main([*base, *extra, "--output", str(out)]) == 0
        metas.append(read_metadata(out))
        clips.append(sf.read(out)[0])
    assert metas[0]["eta"] == "0.5" and metas[1]["eta"] == "0.9" and metas[0]["duration"] == "0.5"
    assert "steps_offset" not in metas[0] and metas[2]["duration"] == "0.4"
    assert metas[0]["precision"] == "fp32" and metas[3]["precision"] == "bf16"
    assert all(m != metas[0] for m in metas[1:])
    assert not np.array_equal(clips[1], clips[0]) and not np.array_equal(clips[3], clips[0])  # eta, precision


def test_demo_synthesized_fallback_never_writes_into_a_users_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the shipped model, demo renders data synth's kit into OUT/synth: an earlier fallback there is
    replaced, but a folder of the user's (their kit.json and recordings) is a one-line error naming --out-dir before
    anything is written (kit.json was replaced and the recordings relabelled 'generated')."""
    import importlib

    from sampleforge.errors import CheckpointError

    resolve_module = importlib.import_module("sampleforge.backends.resolve")

    def no_model(name: object) -> None:
        raise CheckpointError(f"{name}: no such model folder")

    monkeypatch.setattr(resolve_module, "resolve", no_model)
    args = ["demo", "--per-class", "1", "--seed", "3", "--out-dir", str(tmp_path / "demo")]
    assert main(args) == 0
    made = sorted((tmp_path / "demo" / "synth").iterdir())
    assert len(made) == 13 and main(args) == 0 and sorted((tmp_path / "demo" / "synth").iterdir()) == made
    capsys.readouterr()
    mine = tmp_path / "mine"
    (mine / "synth").mkdir(parents=True)
    kit_json = mine / "synth" / "kit.json"
    kit_json.write_text('{"name": "My Kit", "licence": "All rights reserved"}')
    (mine / "synth" / "kick_01.wav").write_bytes(made[0].read_bytes())
    before = {p.name: p.read_bytes() for p in (mine / "synth").iterdir()}
    assert main(["demo", "--per-class", "1", "--out-dir", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "rendering synthesized drums instead" in err[0], err
    assert f"error: --out-dir: {mine / 'synth'} holds another kit ({kit_json}); nothing written" in err[1]
    assert {p.name: p.read_bytes() for p in (mine / "synth").iterdir()} == before


@pytest.mark.parametrize("flag", [["--no-vocoder"], ["--diffusion-ckpt", "MODEL"]])
def test_quantize_applies_with_replaced_components(listening_model: Path, tmp_path: Path, flag: list[str]) -> None:
    """--quantize int8 quantises the model whatever components replace its own: the clip is the one that the
    same settings make without the component flags (MODEL+griffin-lim for --no-vocoder)."""
    def clip(name: str, model: str, *more: str) -> object:
        out = tmp_path / f"{name}.wav"
        assert main(["generate", "--model", model, "--prompt", "kick", "--steps", "2", "--seed", "1", "--quiet",
                     "--output", str(out), *more]) == 0
        return sf.read(str(out))[0]

    model = str(listening_model)
    given = [str(listening_model) if f == "MODEL" else f for f in flag]
    spec = f"{model}+griffin-lim" if flag == ["--no-vocoder"] else model
    quantized = clip("q", model, *given, "--quantize", "int8")
    assert (quantized == clip("ref", spec, "--quantize", "int8")).all()
    assert not (quantized == clip("plain", model, *given)).all()


def test_the_command_parsers_load_no_model_code() -> None:
    """`sampleforge --help` (every command's parser) and a bad flag answer without importing torch, scipy or
    pyloudnorm: seconds on a laptop otherwise."""
    code = ("import sys\n"
            "from sampleforge.cli import build_parser\n"
            "build_parser()\n"
            "print(','.join(m for m in ('torch', 'scipy', 'pyloudnorm') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import sampleforge

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"sampleforge {sampleforge.__version__}"
