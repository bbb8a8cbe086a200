"""Self-contained HTML reports: spectrogram thumbnails (PNG) and audio players (16-bit WAV), both embedded
as base64 so one file can be mailed or attached to an issue. Used by ``sampleforge eval`` and ``sweep``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from sampleforge.audio.mel import MelConfig, MelSpectrogram  # noqa: E402

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
td, th { border: 1px solid #ccc; padding: .25em .5em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: .6em; }
figure { margin: 0; padding: .3em; border: 1px solid #ddd; width: 200px; font-size: .75em; }
figure img { width: 100%; height: 110px; image-rendering: pixelated; display: block; }
figure audio { width: 100%; height: 28px; }
.bad { color: #b00; font-weight: bold; } .note { color: #555; font-size: .9em; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; }
"""


def json_safe(value: Any) -> Any:
    """Replace non-finite floats (NaN, ±inf) by None, recursively, so the JSON is standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def write_json(data: Any, path: str | Path) -> Path:
    p = Path(path)
    p.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
    return p


def spectrogram_png(wav: np.ndarray | torch.Tensor, sample_rate: int = 44100) -> bytes:
    """A mono clip (T,) → PNG bytes of its 128-band log-mel (low frequencies at the bottom)."""
    x = torch.nan_to_num(torch.as_tensor(np.asarray(wav, dtype=np.float32)).reshape(-1))
    mel = MelSpectrogram(MelConfig(sample_rate=sample_rate))
    with torch.no_grad():
        lm = mel(x).numpy()
    buf = io.BytesIO()
    plt.imsave(buf, lm, cmap="magma", vmin=-11.5, vmax=max(float(lm.max()), -6.0), origin="lower", format="png")
    return buf.getvalue()


def wav_bytes(wav: np.ndarray | torch.Tensor, sample_rate: int = 44100) -> bytes:
    """A mono clip (T,) → 16-bit PCM WAV bytes (non-finite samples become 0, values clipped to ±1)."""
    x = np.clip(np.nan_to_num(np.asarray(wav, dtype=np.float32).reshape(-1)), -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def clip_figure(wav: np.ndarray | torch.Tensor, sample_rate: int, caption: str) -> str:
    """One clip: spectrogram thumbnail, an <audio> player and a caption."""
    img = _data_uri("image/png", spectrogram_png(wav, sample_rate))
    snd = _data_uri("audio/wav", wav_bytes(wav, sample_rate))
    return (
        f'<figure><img alt="log-mel spectrogram" src="{img}">'
        f'<audio controls preload="none" src="{snd}"></audio>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def clip_grid(figures: Iterable[str]) -> str:
    return '<div class="grid">' + "".join(figures) + "</div>"


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` significant places, None/NaN as an em dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    """An HTML table of ``rows`` (dicts) over ``columns``; the first column is left-aligned."""
    heads = headers or columns
    out = ["<table><tr>"]
    out += [f'<th class="{"l" if i == 0 else ""}">{html.escape(h)}</th>' for i, h in enumerate(heads)]
    out.append("</tr>")
    for row in rows:
        out.append("<tr>")
        for i, c in enumerate(columns):
            out.append(f'<td class="{"l" if i == 0 else ""}">{html.escape(fmt(row.get(c)))}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def page(title: str, body: Sequence[str]) -> str:
    """A complete HTML document."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>" + "\n".join(body) + "</body></html>\n"
    )


def section(title: str, *parts: str) -> str:
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"
