"""The loss log of a run: ``loss.csv`` (step, time, loss, metrics...) and its plot ``loss.png``.

The CSV is appended across resumes: opening it for a run resumed at step k drops the rows after k
(written after the last checkpoint by a run that was then killed), so no step appears twice.
Rows are appended one at a time (every ``log_every`` steps); the plot is redrawn on demand.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("sampleforge.train")


class LossLog:
    """Append-only loss table of one run directory."""

    def __init__(self, out_dir: Path, keep_until: int) -> None:
        """Open ``out_dir/loss.csv``, keeping only rows with step <= ``keep_until`` (0 for a fresh run)."""
        self.csv_path = out_dir / "loss.csv"
        self.png_path = out_dir / "loss.png"
        self.fields: list[str] | None = None
        self._warned: set[str] = set()
        if not self.csv_path.exists():
            return
        try:
            with self.csv_path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                header = next(reader, [])
                rows = list(reader)
            kept = [r for r in rows if r and int(r[0]) <= keep_until]
        except (ValueError, csv.Error) as exc:  # not a loss log: kept aside, not lost, and a new one begins
            aside = self.csv_path.with_name("loss.unreadable.csv")
            os.replace(self.csv_path, aside)
            log.warning("%s: unreadable (%s); moved to %s, a new loss log begins", self.csv_path, exc, aside.name)
            return
        if not kept:
            self.csv_path.unlink()
            return
        self.fields = header
        if len(kept) != len(rows):
            log.info("loss.csv: dropping %d rows logged after the checkpoint", len(rows) - len(kept))
            tmp = self.csv_path.with_suffix(".csv.tmp")
            with tmp.open("w", newline="") as f:
                csv.writer(f).writerows([header, *kept])
            os.replace(tmp, self.csv_path)

    def append(self, step: int, seconds: float, values: Mapping[str, float]) -> None:
        """Add one row; the columns are fixed by the first row ever written (new names are ignored)."""
        if self.fields is None:
            self.fields = ["step", "time", *values]
            with self.csv_path.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        for name in values:
            if name not in self.fields and name not in self._warned:
                self._warned.add(name)
                log.warning("loss.csv: metric %r is not a column of this run's log; not recorded", name)
        row = [str(step), f"{seconds:.2f}", *(_fmt(values.get(name)) for name in self.fields[2:])]
        with self.csv_path.open("a", newline="") as f:
            csv.writer(f).writerow(row)

    def read(self) -> tuple[list[str], list[list[float]]]:
        """(column names, rows as floats; NaN where a value is missing)."""
        if not self.csv_path.exists():
            return [], []
        with self.csv_path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            return header, [[float(v) if v else math.nan for v in r] for r in reader if r]

    def plot(self) -> Path | None:
        """Redraw ``loss.png``: one panel per value column against step; returns its path (None: no rows)."""
        header, rows = self.read()
        if not rows:
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend change
        from matplotlib.figure import Figure

        names = header[2:]
        cols = min(len(names), 3)
        nrows = -(-len(names) // cols)
        fig = Figure(figsize=(4.5 * cols, 3.0 * nrows), dpi=80)
        fig.subplots_adjust(left=0.08, right=0.97, bottom=0.1, top=0.92, wspace=0.25, hspace=0.45)
        steps = [r[0] for r in rows]
        for i, name in enumerate(names):
            ax = fig.add_subplot(nrows, cols, i + 1)
            ys = [r[i + 2] for r in rows]
            ax.plot(steps, ys, lw=1.0)
            finite = [y for y in ys if math.isfinite(y)]
            if finite and min(finite) > 0:
                ax.set_yscale("log")
                ax.minorticks_off()
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        tmp = self.png_path.with_name("loss.tmp.png")
        FigureCanvasAgg(fig).print_png(str(tmp))
        os.replace(tmp, self.png_path)
        return self.png_path


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.6g}"
