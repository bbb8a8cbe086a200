"""Data-parallel training: `accelerate launch` with 2 CPU processes (torch DDP over gloo).

Two processes with batch_size 4 must train like one process with batch_size 8 (each step's 8 items
are the same, split between the ranks, and DDP averages the gradients), and only rank 0 writes.
This file is also the script the launcher runs: ``python test_ddp.py OUT REPORT_DIR``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from sampleforge.train.loop import TrainConfig, train

HERE = Path(__file__).resolve().parent


def config(batch_size: int) -> TrainConfig:
    return TrainConfig(
        max_steps=6,
        batch_size=batch_size,
        lr=3e-3,
        log_every=2,
        checkpoint_minutes=0.0,
        preview_every=3,
        ema_decay=0.9,
    )


def toy_task() -> Any:
    spec = importlib.util.spec_from_file_location("train_toy_conftest", HERE / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ToyTask(dropout=0.0, noise=0.0, augment=False)  # no per-rank randomness


def worker(out: Path, report: Path) -> None:
    torch.set_num_threads(1)
    task = toy_task()
    result = train(task, config(batch_size=4), out, progress=False)
    rank = os.environ["RANK"]
    info = {"fetched": task.data.fetched, "steps": result.steps_run, "loss": result.final_loss}
    (report / f"rank{rank}.json").write_text(json.dumps(info))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_train_like_one_with_twice_the_batch(tmp_path: Path, load_weights: Any) -> None:
    out, report = tmp_path / "ddp", tmp_path / "report"
    report.mkdir()
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), __file__, str(out), str(report),
    ]  # fmt: skip
    env = os.environ | {"ACCELERATE_USE_CPU": "true", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-4000:]

    ranks = [json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["steps"] for r in ranks] == [6, 6]
    # 24 items, 8 per step: 3 steps an epoch; in each epoch the ranks see disjoint halves
    epoch0 = [r["fetched"][:12] for r in ranks]
    assert not set(epoch0[0]) & set(epoch0[1]) and set(epoch0[0]) | set(epoch0[1]) == set(range(24))

    meta = json.loads((out / "checkpoint" / "state.json").read_text())
    assert meta["step"] == 6 and meta["world_size"] == 2 and len(meta["rng"]) == 2
    state = load_weights(out / "checkpoint" / "state.safetensors")
    assert {"rng.0.generator", "rng.1.generator"} <= set(state)
    previews = sorted(p.name for p in (out / "previews" / "step_0000003").iterdir())
    assert previews == ["rank0.json"]  # rank 0 only
    assert [row.split(",")[0] for row in (out / "loss.csv").read_text().split()[1:]] == ["2", "4", "6"]

    single = train(toy_task(), config(batch_size=8), tmp_path / "single", progress=False)
    assert ranks[0]["loss"] == ranks[1]["loss"]  # the logged loss is the mean over ranks
    assert abs(ranks[0]["loss"] - single.final_loss) < 1e-5
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_weights(out / "checkpoint" / name)
        b = load_weights(tmp_path / "single" / "checkpoint" / name)
        for k in b:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{name}: {k}")


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]))
