"""The benchmarks on the debug model and on fake clocks: what they time, in what order, with which model and on how
many threads; and the peer network's configuration. No timing is asserted."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import backends, peers, speed, timing, workflow  # noqa: E402
from sampleforge.locations import DEFAULT_MODEL  # noqa: E402
from sampleforge.pipeline import Generator  # noqa: E402
from tests.model_folders import edited_copy  # noqa: E402


def test_speed_runs_on_a_debug_model(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = speed.main(["--model", str(debug_model), "--threads", "1", "--batches", "1,2", "--steps", "2",
                       "--fast", "euler:1", "--repeats", "1", "--no-peer", "--gl-iters", "4", "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["vocoder"] == "neural vocoder; U-Net fp32"  # the debug model has one; --gl-iters only matters without
    assert [(r["batch"], r["sampler"], r["steps"], r["repeats"]) for r in res["ours"]] == [
        (1, "ddim", 2, 1), (1, "euler", 1, 1), (2, "ddim", 2, 3), (2, "euler", 1, 3)]  # --batch-repeats 3
    for r in res["ours"]:
        assert r["seconds_per_clip"] > 0 and r["realtime_factor"] > 0 and r["clip_seconds"] == pytest.approx(2.0)
        # the decode and the vocoder are timed inside each timed generation, so in every run they are part of it
        assert r["stage_split"] == "timed inside the generation"
        runs = r["per_repeat_seconds"]
        assert len(runs["total"]) == r["repeats"]
        for total, decode, vocode in zip(runs["total"], runs["decode"], runs["vocoder"], strict=True):
            assert 0 < decode and 0 < vocode and decode + vocode <= total
        assert r["decode_seconds_per_clip"] > 0 and r["vocoder_seconds_per_clip"] > 0
        assert 0 <= r["unet_seconds_per_clip"] <= r["seconds_per_clip"]
    assert res["peak_rss_mb"] > 50
    text = capsys.readouterr().out
    assert "s/clip" in text and "peak RSS" in text and "peer" not in text and "(estimate)" not in text
    assert text.startswith(f"model timed: {res['model']}")


def test_speed_vocoders_only(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "voc.json"
    code = speed.main(["--model", str(debug_model), "--vocoders", "--threads", "1", "--batches", "1",
                       "--repeats", "2", "--json", str(out)])
    assert code == 0
    (row,) = json.loads(out.read_text())["vocoders"]
    assert row["batch"] == 1 and row["threads"] == 1 and row["griffin_lim_iters"] == 32
    assert row["vocoder_seconds_per_clip"] > 0 and row["griffin_lim_seconds_per_clip"] > 0
    assert row["ratio"] == pytest.approx(row["vocoder_seconds_per_clip"] / row["griffin_lim_seconds_per_clip"])
    assert "Griffin-Lim 32" in capsys.readouterr().out


def test_speed_vocoders_puts_another_folders_vocoder_on_the_model(debug_model: Path, model_without_vocoder: Path,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``--vocoder``: a training run's vocoder timed on a model that has none (as drums-v2 ships)."""
    out = tmp_path / "voc.json"
    args = ["--model", str(model_without_vocoder), "--vocoders", "--threads", "1", "--batches", "1", "--repeats", "2"]
    assert speed.main([*args, "--vocoder", str(debug_model), "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["vocoders"]
    assert row["vocoder_seconds_per_clip"] > 0 and "neural vocoder" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        speed.main([*args, "--vocoder", str(tmp_path / "nothing")])
    assert exc.value.code == 2 and "--vocoder: " in capsys.readouterr().err


def test_speed_pairs_two_models_in_one_run(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pair.json"
    code = speed.main(["--model", str(debug_model), "--vs", str(debug_model), "--threads", "1", "--steps", "2",
                       "--fast", "euler:1", "--repeats", "3", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["paired"]
    assert [(r["sampler"], r["steps"], r["pairs"]) for r in rows] == [("ddim", 2, 3), ("euler", 1, 3)]
    for r in rows:
        assert r["a_seconds"] > 0 and r["b_seconds"] > 0 and r["cpu_ratio"] > 0
        assert r["ratio_quartiles"][0] <= r["ratio"] <= r["ratio_quartiles"][1]
        assert 0.2 < r["ratio"] < 5  # the same model against itself
    assert "ratio" in capsys.readouterr().out


def test_peer_lengths() -> None:
    assert peers.PEER_LENGTH == 2**15
    assert peers.peer_length(2.0) == 88320 and peers.peer_length(2.0) % peers.PEER_DOWNSAMPLE == 0


@pytest.mark.skipif(importlib.util.find_spec("audio_diffusion_pytorch") is None, reason="bench extra not installed")
def test_peer_is_tiny_audio_diffusion_drum_config() -> None:
    torch.manual_seed(0)
    model = peers.build_peer()
    assert peers.n_params(model) == pytest.approx(31.57e6, rel=0.01)
    assert peers.n_params(peers.build_peer()) == peers.n_params(model)  # building twice works (torchaudio stand-in)
    x = torch.randn(1, 2, 1024)
    with torch.inference_mode():
        y = model.net(x, torch.tensor([0.5]))
    assert y.shape == x.shape
    wall, cpu = peers.time_forward(model, 1024, repeats=1)
    assert wall > 0 and cpu > 0


def test_speed_without_steps_times_the_models_own_defaults(debug_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = speed.main(["--model", str(debug_model), "--threads", "1", "--batches", "1", "--fast", "euler:1",
                       "--repeats", "1", "--no-peer", "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert [(r["sampler"], r["steps"]) for r in res["ours"]] == [("ddim", 50), ("euler", 1)]


def scripted_clock(durations: list[tuple[float, float]]) -> timing.Clock:
    """A clock for ``timing.in_turn``: the k-th timed call takes ``durations[k]`` (wall, CPU) seconds."""
    marks: list[tuple[float, float]] = [(0.0, 0.0)]
    for wall, cpu in durations:
        marks += [(marks[-1][0] + wall, marks[-1][1] + cpu), (marks[-1][0] + wall + 1.0, marks[-1][1] + cpu)]
    reads = iter(marks[:-1])
    return lambda: next(reads)


def test_in_turn_reverses_the_order_every_other_round() -> None:
    calls: list[str] = []
    variants = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = timing.in_turn(variants, 3, clock=scripted_clock([(k + 1.0, 0.5) for k in range(9)]))
    assert calls == list("abccbaabc")
    assert times["a"]["wall"] == [1.0, 6.0, 7.0] and times["c"]["wall"] == [3.0, 4.0, 9.0]
    assert times["b"]["cpu"] == [0.5, 0.5, 0.5]
    summary = timing.ratio_summary([4.0, 1.0, 9.0], [2.0, 1.0, 3.0], scale=10)
    assert summary == {"median": 20.0, "quartiles": [15.0, 25.0], "rounds": 3}
    assert timing.median([1.0, 3.0]) == 2.0  # the middle of two, not the slower


def test_peer_ratio_is_the_median_of_rounds_in_turn(debug_model: Path) -> None:
    """The peer's forward and a clip in each setting are timed in the same round, the order reversed every other
    round: a machine three times slower in round 2 slows all three, and the ratio holds. Timed one after another
    (peer always last), round 2's times would land on the wrong variants and the median would move."""
    gen = Generator.from_pretrained(str(debug_model), device="cpu")
    forwards: list[int] = []
    clock = scripted_clock([
        (0.5, 0.4), (0.1, 0.1), (10.0, 8.0),  # round 1: ddim, euler, peer
        (30.0, 9.0), (0.3, 0.12), (1.5, 0.45),  # round 2, three times slower (CPU less so): peer, euler, ddim
    ])
    p = speed.peer_in_turn(gen, lambda: forwards.append(1), [("ddim", 2), ("euler", 1)], 3.0, rounds=2,
                           peer_steps=50, clock=clock)
    assert len(forwards) == 2 and p["rounds"] == 2
    ddim, euler = p["settings"]
    assert (ddim["sampler"], euler["sampler"]) == ("ddim", "euler")
    assert ddim["ratio"] == pytest.approx(1000.0) and euler["ratio"] == pytest.approx(5000.0)  # 50 x 10 / 0.5 ...
    assert ddim["cpu_ratio"] == pytest.approx((1000.0 + 1000.0) / 2) and euler["cpu_ratio"] == pytest.approx(3875.0)
    assert p["seconds_per_2s_clip"] == pytest.approx(50 * 20.0)
    assert ddim["seconds_per_clip"] == pytest.approx(1.0)


def test_backend_speedups_are_the_median_of_rounds_in_turn() -> None:
    calls: list[str] = []
    variants = {name: (lambda name=name: calls.append(name)) for name in ("fp32", "int8", "bf16")}
    clock = scripted_clock([
        (4.0, 4.0), (1.0, 1.0), (2.0, 2.0),  # fp32, int8, bf16
        (6.0, 6.0), (3.0, 3.0), (12.0, 12.0),  # bf16, int8, fp32: the machine twice as slow
        (4.0, 4.0), (2.0, 1.0), (2.0, 2.0),  # fp32, int8 (a busy moment), bf16
    ])
    rows = backends.compare_in_turn(variants, 3, clock=clock)
    assert calls == ["fp32", "int8", "bf16", "bf16", "int8", "fp32", "fp32", "int8", "bf16"]
    assert rows["fp32"]["s"] == 4.0 and "speedup" not in rows["fp32"]
    assert rows["int8"]["speedup"] == pytest.approx(4.0)  # rounds 4, 4, 2: not fp32's median over int8's (4 / 2)
    assert rows["int8"]["cpu_speedup"] == pytest.approx(4.0) and rows["int8"]["speedup_quartiles"] == [3.0, 4.0]
    assert rows["bf16"]["speedup"] == pytest.approx(2.0)


@pytest.fixture
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Torch's thread count put back after the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _recording(calls: list[int], fn: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    """``fn`` that first notes the torch thread count it runs with."""
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(torch.get_num_threads())
        return fn(*args, **{**kwargs, **fixed})

    return wrapped


def test_backends_run_on_the_threads_asked_for(torch_threads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[int] = []
    monkeypatch.setattr(backends, "bench_decode", _recording(seen, backends.bench_decode))
    monkeypatch.setattr(backends, "bench_dit", _recording(seen, backends.bench_dit))
    torch.set_num_threads(2)
    out = tmp_path / "backends.json"
    assert backends.main(["--threads", "1", "--seconds", "0.5", "--decoder-channels", "4", "--chunk", "0.25",
                          "--layers", "1", "--length", "8", "--repeats", "2", "--json", str(out)]) == 0
    assert seen == [1, 1] and torch.get_num_threads() == 1
    res = json.loads(out.read_text())
    assert res["threads"] == 1 and res["dit"]["rounds"] == 2
    for name in ("int8", "bf16"):
        assert res["dit"][name]["speedup"] > 0 and res["dit"][name]["cpu_speedup"] > 0
    text = capsys.readouterr().out
    assert "1 thread;" in text and "in turn, 2 rounds" in text
    with pytest.raises(SystemExit):
        backends.main(["--threads", "0"])


def test_backends_sao_small_builds_its_dit(torch_threads: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """``--sao-small`` builds Stable Audio Open Small's DiT through backends.sat's config (one block here, 16 as
    shipped) and times fp32, int8 and bf16 on the threads asked for."""
    seen: list[int] = []
    monkeypatch.setattr(backends, "bench_sao_small", _recording(seen, backends.bench_sao_small, depth=1))
    torch.set_num_threads(1)
    out = tmp_path / "sao.json"
    assert backends.main(["--sao-small", "--threads", "2", "--repeats", "1", "--json", str(out)]) == 0
    assert seen == [2]
    res = json.loads(out.read_text())
    sao = res["sao_small"]
    assert res["threads"] == 2 and sao["depth"] == 1 and sao["rounds"] == 1
    assert sao["fp32_step_s"] > 0 and sao["int8"]["step_s"] > 0 and sao["bf16"]["step_s"] > 0
    assert 0 < sao["int8"]["rel_l2"] < 0.5 and 0 < sao["bf16"]["rel_l2"] < 0.1
    assert "2 threads;" in capsys.readouterr().out


class _Stop(Exception):
    pass


def test_speed_and_workflow_time_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def from_pretrained(cls: type, model: str, **kwargs: Any) -> Any:
        asked.append(str(model))
        raise _Stop

    monkeypatch.setattr(Generator, "from_pretrained", classmethod(from_pretrained))
    for main in (speed.main, workflow.main):
        with pytest.raises(_Stop):
            main([])
    assert asked == [DEFAULT_MODEL, DEFAULT_MODEL] and DEFAULT_MODEL == "drums-v2"


def test_make_bench_times_the_default_model_without_installing() -> None:
    lines = (REPO / "Makefile").read_text().splitlines()
    start = lines.index("bench: install")
    recipe = list(itertools.takewhile(lambda line: line.startswith("\t"), lines[start + 1:]))
    assert recipe == ["\t$(BIN)/python -m benchmarks.speed"]  # no pip install, no --model: speed.py's default


def test_stage_timers_time_the_stages_inside_the_call(debug_model: Path) -> None:
    gen = Generator.from_pretrained(str(debug_model), device="cpu")
    with speed.stage_timers(gen) as stages:
        gen.generate_full(["kick", "snare"], n=1, steps=2, seed=0)
    assert stages.calls == {"decode": 1, "vocode": 1}
    assert stages.seconds["decode"] > 0 and stages.seconds["vocode"] > 0
    assert "decode" not in vars(gen) and "vocode" not in vars(gen)  # the class's methods again


def test_speed_labels_an_estimated_split(debug_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline whose stages the timers do not see: decode and vocoder re-timed on their own, the rest an estimate."""
    @contextlib.contextmanager
    def blind(gen: Any) -> Iterator[speed.StageTimes]:
        yield speed.StageTimes({"decode": 0.0, "vocode": 0.0}, {"decode": 0, "vocode": 0})

    monkeypatch.setattr(speed, "stage_timers", blind)
    gen = Generator.from_pretrained(str(debug_model), device="cpu")
    r = speed.time_generation(gen, 1, 2, "ddim", 3.0, 2)
    assert r["stage_split"] == "estimate" and r["decode_seconds_per_clip"] > 0 and r["vocoder_seconds_per_clip"] > 0
    assert r["unet_seconds_per_clip"] >= 0


def test_paired_runs_each_model_at_its_own_guidance(debug_model: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    other = edited_copy(debug_model, tmp_path / "other", lambda c: c["diffusion"].update(cfg_scale=5.5))
    used: dict[str, set[float]] = {}
    scales = Generator.cfg_scales

    def spy(self: Generator, prompts: Any, params: Any) -> Any:
        out = scales(self, prompts, params)
        used.setdefault(str(self.bundle.config.diffusion.cfg_scale), set()).update(out)
        return out

    monkeypatch.setattr(Generator, "cfg_scales", spy)
    assert speed.main(["--model", str(debug_model), "--vs", str(other), "--threads", "1", "--steps", "2",
                       "--fast", "euler:1", "--repeats", "2"]) == 0
    assert used["5.5"] == {5.5} and 5.5 not in used["None"]
