"""Timing shared by the benchmarks: medians, and variants timed in turn so that a ratio holds on a shared machine.

A ratio of two timings taken minutes apart divides one stretch of machine load by another. ``in_turn`` runs
every variant once a round, the order reversed every other round (a b c, c b a, a b c, ...), so that no variant
always goes first or last and each round's variants see the same load; ``ratio_summary`` then takes the median
of the per-round ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

Clock = Callable[[], tuple[float, float]]  # (wall seconds, CPU seconds of this process)


def clock() -> tuple[float, float]:
    """Wall time and this process's CPU time (summed over its threads), in seconds."""
    return time.perf_counter(), time.process_time()


def median(x: Sequence[float]) -> float:
    return float(statistics.median(x))


def quartiles(x: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles of ``x`` (inclusive method: between its smallest and largest value)."""
    if len(x) < 2:
        return float(x[0]), float(x[0])
    q = statistics.quantiles(x, n=4, method="inclusive")
    return float(q[0]), float(q[2])


def set_threads(threads: int) -> int:
    """Run torch's CPU operators on ``threads`` threads; returns the count torch now uses."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)
    return torch.get_num_threads()


def in_turn(variants: Mapping[str, Callable[[], Any]], rounds: int,
            clock: Clock = clock) -> dict[str, dict[str, list[float]]]:
    """Call each of ``variants`` once a round for ``rounds`` rounds, in the given order in even rounds and reversed
    in odd ones. Returns, per variant, its wall and CPU seconds of each round: ``{name: {"wall": [...], "cpu":
    [...]}}``. ``clock`` is read just before and just after each call, and nowhere else."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    names = list(variants)
    out: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            w0, c0 = clock()
            variants[name]()
            w1, c1 = clock()
            out[name]["wall"].append(w1 - w0)
            out[name]["cpu"].append(c1 - c0)
    return out


def ratio_summary(numerator: Sequence[float], denominator: Sequence[float], scale: float = 1.0) -> dict[str, Any]:
    """``scale * numerator[r] / denominator[r]`` for each round r: their median, quartiles and count."""
    ratios = [scale * a / b for a, b in zip(numerator, denominator, strict=True)]
    low, high = quartiles(ratios)
    return {"median": median(ratios), "quartiles": [low, high], "rounds": len(ratios)}
