"""Self-contained HTML reports: spectrogram thumbnails (PNG) and audio players (16-bit WAV), both embedded
as base64 so one file can be mailed or attached to an issue. Used by ``sampleforge eval``, ``eval vocoder`` (with
a blind listening test) and ``sweep``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from sampleforge.audio.griffinlim import describe  # noqa: E402
from sampleforge.audio.mel import MelConfig, MelSpectrogram  # noqa: E402
from sampleforge.errors import UserInputError, file_in_the_way  # noqa: E402

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
.trial td { vertical-align: middle; } .trial audio { width: 190px; height: 28px; }
.answer { visibility: hidden; font-weight: bold; } .revealed .answer { visibility: visible; }
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


def clip_figure(wav: np.ndarray | torch.Tensor, sample_rate: int, caption: str, player: bool = True) -> str:
    """One clip: spectrogram thumbnail, an <audio> player (unless ``player`` is False) and a caption."""
    img = _data_uri("image/png", spectrogram_png(wav, sample_rate))
    snd = _data_uri("audio/wav", wav_bytes(wav, sample_rate)) if player else ""
    return (
        f'<figure><img alt="log-mel spectrogram" src="{img}">'
        + (f'<audio controls preload="none" src="{snd}"></audio>' if player else "")
        + f"<figcaption>{html.escape(caption)}</figcaption></figure>"
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


PAGE_STAMP = '<meta name="generator" content="sampleforge">'  # in every page: an earlier report, safe to replace
_UNSTAMPED_HEAD = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>sampleforge '  # pages before it


def page(title: str, body: Sequence[str]) -> str:
    """A complete HTML document."""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{PAGE_STAMP}'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>" + "\n".join(body) + "</body></html>\n"
    )


def section(title: str, *parts: str) -> str:
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def pre(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


# --------------------------------------------------------------------------------------------------
# the two pages


def _pct(v: Any) -> Any:
    return None if v is None else 100.0 * v


def eval_html(result: dict[str, Any], show_per_class: int = 8, show_reference: int = 2) -> str:
    """The ``sampleforge eval`` page: summary, per-class table, vocoder check, clip grids with players."""
    sr = int(result["_sample_rate"])
    o, st = result["overall"], result["settings"]
    body = [note(f"model {result['model_id']} — {st['per_class']} clips per class, {st['sampler']} "
                 f"{st['steps']} steps, cfg {st['cfg_scale']}, seed {st['seed']}, on {st['device']}. "
                 f"{result['reference']['split']}.")]
    summary = [
        {"metric": "class adherence (classifier accuracy on generated clips, %)", "value": _pct(o["adherence"])},
        *([{"metric": "class adherence: 95 % interval (chance alone), %",
            "value": " – ".join(f"{100 * x:.1f}" for x in o["adherence_interval"])}] if o.get("adherence_interval") else []),
        {"metric": "classifier accuracy on the real reference clips, %",
         "value": _pct(result["reference"]["classifier_accuracy"])},
        {"metric": "FD, classifier embedding (generated vs reference)", "value": o["fd_classifier"]},
        {"metric": "FD, classifier embedding: real-vs-real floor", "value": o["fd_classifier_floor"]},
        {"metric": "FD, MFCC-statistics embedding", "value": o["fd_mfcc"]},
        {"metric": "FD, MFCC: real-vs-real floor", "value": o["fd_mfcc_floor"]},
        {"metric": "diversity (mean pairwise distance), generated / reference",
         "value": f"{fmt(o['diversity'])} / {fmt(o['diversity_reference'])}"},
        {"metric": "nearest training clip distance (mean) / train-to-train median",
         "value": f"{fmt(o['nearest_train_distance_mean'])} / {fmt(o['train_to_train_nearest_median'])}"},
        {"metric": "clipping % (finished / before finishing)",
         "value": f"{fmt(o['clipping_percent'])} / {fmt(o['raw_clipping_percent'])}"},
        {"metric": "NaN / inf values", "value": o["nan_count"]},
        {"metric": "loudness, mean LUFS", "value": o["lufs_mean"]},
        {"metric": "onset, mean ms", "value": o["onset_ms_mean"]},
    ]
    body.append(section("Summary", table(summary, ["metric", "value"])))
    rows = []
    for cat, v in result["per_class"].items():
        rows.append({"class": cat, "prompt": v["prompt"], "judged": v["judged_as"], "adh": _pct(v["adherence"]),
                     "p": v["target_probability"], "pred": ", ".join(f"{k} {n}" for k, n in v["predicted"].items()),
                     "div": v["diversity"], "nn": v["nearest_train_distance"]["mean"], "clip": v["clipping_percent"],
                     "rawclip": v["raw_clipping_percent"], "nan": v["nan_count"], "lufs": v["lufs_mean"],
                     "onset": v["onset_ms_mean"], "lat": v["latent_std"], "std": v["raw_audio_std"]})
    cols = ["class", "prompt", "judged", "adh", "p", "pred", "div", "nn", "clip", "rawclip", "nan", "lufs",
            "onset", "lat", "std"]
    heads = ["class", "prompt", "judged as", "adherence %", "p(target)", "classifier says", "diversity",
             "nearest train", "clip %", "raw clip %", "NaN", "LUFS", "onset ms", "latent std", "raw std"]
    body.append(section("Per class", table(rows, cols, heads)))
    if result["skipped_classes"]:
        body.append(note(f"not judged (no classifier class): {', '.join(result['skipped_classes'])}"))
    voc = result["vocoder_check"]
    if voc.get("clips"):
        body.append(vocoder_section(voc, result["_vocoder_examples"], sr))
    trip = result.get("roundtrip_check") or {}
    if trip.get("clips"):
        trows = [{"class": c, "clips": v["clips"], "vocoder": _pct(v["vocoder"]), "vae": _pct(v["vae"]),
                  "says": ", ".join(f"{k} {n}" for k, n in v["vae_predicted"].items()), "l1": v["logmel_l1"]}
                 for c, v in trip["per_class"].items()]
        body.append(section(
            f"Round trip ({trip['clips']} real clips): does the autoencoder keep the class?",
            table(trows, ["class", "clips", "vocoder", "vae", "says", "l1"],
                  ["class", "clips", "vocoder alone %", "VAE + vocoder %", "classifier says (VAE)", "VAE log-mel L1"]),
            note("A class the VAE round trip already loses cannot be fixed by diffusion training: retrain the VAE.")))
    for cat, clips in result["_audio"].items():
        v = result["per_class"][cat]
        figs = [clip_figure(x, sr, f"seed {seed}") for x, seed in zip(clips[:show_per_class], v["seeds"], strict=False)]
        body.append(section(f"Generated: {v['prompt']!r}", clip_grid(figs)))
    ref = result["_reference"]
    figs = []
    for cat in result["per_class"]:
        idx = [i for i, c in enumerate(ref.categories) if c == cat][:show_reference]
        figs += [clip_figure(ref.wav[i], sr, f"{cat}: {ref.kits[i]} / {ref.names[i]}") for i in idx]
    if figs:
        body.append(section("Real reference clips", clip_grid(figs)))
    return page(f"sampleforge eval — {result['model_id']}", body)


def vocoder_section(voc: dict[str, Any], examples: Sequence[tuple[str, Any, Any, Any]], sr: int,
                    players: bool = True) -> str:
    """The vocoder check (``evaluate.vocoder_check``): distances and spectral character of the model's vocoder,
    Griffin-Lim and the recordings, the distances by class, and ``examples`` (name, original, vocoder,
    Griffin-Lim) as players (``players=False``: left out)."""
    what = voc.get("vocoder_description")
    vrows = [{"synth": "model vocoder" + (f" ({what})" if what else ""), **(voc["vocoder"] or {})},
             {"synth": "Griffin-Lim (" + (describe(voc["griffin_lim_iters"], voc.get("griffin_lim_mel_iters") or 0)
                                          if voc.get("griffin_lim_iters") else "? iterations") + ")",
              **voc["griffin_lim"]},
             {"synth": "real recordings", **(voc.get("real") or {})}]
    figs = []
    for name, orig, v_wav, gl_wav in examples if players else ():
        figs += [clip_figure(orig, sr, f"{name}: original"), clip_figure(v_wav, sr, f"{name}: vocoder"),
                 clip_figure(gl_wav, sr, f"{name}: Griffin-Lim")]
    return section(
        f"Vocoder check ({voc['clips']} real clips, against the original waveform)",
        table(vrows, ["synth", "logmel_l1", "mrstft", "mr_logmel_l1", "tail_flatness", "hop_flutter_db",
                      "hf_peakiness_db"],
              ["from the real log-mel", "log-mel L1", "MR-STFT", "MR log-mel L1", "tail flatness 2-16 kHz",
               "86-Hz flutter dB", "5-16 kHz peakiness dB"]),
        note("MR-STFT: mean over Hann windows 256/512/1024/2048 of spectral convergence + log-magnitude L1; "
             "it compares exact spectra, so two realisations of one noise score far apart. MR log-mel L1: the "
             "log-mel L1 at the same windows (32-128 bands), a band envelope that follows the attack. "
             "The last three columns should be close to the real recordings' row."
             + ("" if voc["vocoder"] else " This model has no vocoder: its row is empty and its players use Griffin-Lim.")),
        table([{"class": c, "clips": v["clips"],
                **{f"{k}_{m}": (v[k] or {}).get(m) for k in ("vocoder", "griffin_lim") for m in ("mrstft", "mr_logmel_l1")}}
               for c, v in (voc.get("per_class") or {}).items()],
              ["class", "clips", "vocoder_mrstft", "griffin_lim_mrstft", "vocoder_mr_logmel_l1",
               "griffin_lim_mr_logmel_l1"],
              ["by class", "clips", "MR-STFT vocoder", "MR-STFT Griffin-Lim", "MR log-mel vocoder",
               "MR log-mel Griffin-Lim"]),
        clip_grid(figs))


_TRIAL_SCRIPT = """
function tally() {
  const rows = [...document.querySelectorAll("tr.trial")];
  const count = {vocoder: 0, "griffin-lim": 0, same: 0};
  for (const row of rows) {
    const picked = row.querySelector("input:checked");
    if (picked) count[picked.value === "same" ? "same" : row.dataset[picked.value]] += 1;
  }
  const answered = count.vocoder + count["griffin-lim"] + count.same;
  document.getElementById("tally").textContent = answered + " of " + rows.length + " answered: the vocoder "
    + "closer to the original " + count.vocoder + ", Griffin-Lim closer " + count["griffin-lim"]
    + ", no difference " + count.same + ".";
  document.getElementById("trials").classList.add("revealed");
}
"""


def listening_test(examples: Sequence[tuple[str, Any, Any, Any]], sr: int, seed: int = 0) -> str:
    """A blind A/B test of ``examples`` (name, original, vocoder, Griffin-Lim): each row plays the original,
    then the two re-syntheses as A and B in an order drawn from ``seed``; the listener marks which is closer to
    the original, and "Reveal" names A and B and counts the answers. The order is in the page's source, so
    the test is blind only to a listener who does not read it."""
    order = np.random.default_rng(seed).permutation(np.arange(len(examples)) % 2)  # half the rows vocoder-first
    names = {"vocoder": "the vocoder", "griffin-lim": "Griffin-Lim"}
    rows = ["<tr><th>clip</th><th>original</th><th>A</th><th>B</th><th>closer to the original</th><th></th></tr>"]
    for k, ((name, orig, voc, gl), first) in enumerate(zip(examples, order, strict=True)):
        a, b = ("vocoder", "griffin-lim") if first else ("griffin-lim", "vocoder")
        wavs = {"vocoder": voc, "griffin-lim": gl}
        cells = "".join(f'<td><audio controls preload="none" src="{_data_uri("audio/wav", wav_bytes(w, sr))}"></audio></td>'
                        for w in (orig, wavs[a], wavs[b]))
        choice = "".join(f'<label><input type="radio" name="t{k}" value="{v}"> {t}</label> '
                         for v, t in (("a", "A"), ("b", "B"), ("same", "no difference")))
        rows.append(f'<tr class="trial" data-a="{a}" data-b="{b}"><td class="l">{html.escape(name)}</td>{cells}'
                    f'<td class="l">{choice}</td>'
                    f'<td class="l answer">A: {names[a]}, B: {names[b]}</td></tr>')
    return section(
        f"Listening test ({len(examples)} clips, blind)",
        note("Play the original, then A and B: one is the model's vocoder, the other Griffin-Lim, in an order "
             "drawn per clip. Mark the one closer to the original, then press Reveal."),
        '<table id="trials">' + "".join(rows) + "</table>",
        '<p><button type="button" onclick="tally()">Reveal</button> <span id="tally"></span></p>',
        f"<script>{_TRIAL_SCRIPT}</script>")


def vocoder_html(result: dict[str, Any], examples: Sequence[tuple[str, Any, Any, Any]], sr: int,
                 seed: int = 0) -> str:
    """The ``sampleforge eval vocoder`` page: a blind listening test of ``examples`` (when the model has a
    vocoder), the vocoder check's tables, and the same clips labelled, folded away until asked for."""
    voc_desc = result.get("vocoder_description")
    body = [note(f"model {result['model_id']} — {result['clips']} real clips re-synthesised from their own log-mel. "
                 f"{result['split']}." + (f" Vocoder: {voc_desc}." if voc_desc else ""))]
    has_vocoder = result["vocoder"] is not None
    if has_vocoder and examples:
        body.append(listening_test(examples, sr, seed))
    body.append(vocoder_section(result, examples, sr, players=False))
    if examples:  # with a listening test above, its players serve: spectrograms only here
        figs = [clip_figure(w, sr, f"{name}: {what}", player=not has_vocoder)
                for name, orig, v_wav, gl_wav in examples
                for w, what in ((orig, "original"), *([(v_wav, "vocoder")] if has_vocoder else []), (gl_wav, "Griffin-Lim"))]
        body.append(section("The clips, labelled",
                            f"<details><summary>show the {len(examples)} clips with their spectrograms"
                            + (" (this names A and B)" if has_vocoder else "") + f"</summary>{clip_grid(figs)}</details>"))
    return page(f"sampleforge eval vocoder — {result['model_id']}", body)


def sweep_html(result: dict[str, Any]) -> str:
    """The ``sampleforge sweep`` page: one grid (steps x cfg) per sampler, each cell with stats and players."""
    sr = int(result["_sample_rate"])
    body = [note(f"model {result['model_id']} — prompt {result['prompt']!r}, seed {result['seed']}, "
                 f"{result['n']} clip(s) per cell. Stats are of the raw output before finishing (peak 0.95); "
                 "players play the finished clip. Red: clipping > 1 % or NaN before finishing.")]
    body += [note(f"warning: {w}") for w in result.get("warnings", [])]
    cfgs, steps = result["cfg"], result["steps"]
    for sampler in result["samplers"]:
        out = ['<table><tr><th class="l">steps \\ cfg</th>'] + [f"<th>{fmt(c)}</th>" for c in cfgs] + ["</tr>"]
        for n_steps in steps:
            out.append(f'<tr><th class="l">{n_steps}</th>')
            for c in cfgs:
                cell = next(x for x in result["cells"] if x["sampler"] == sampler and x["steps"] == n_steps
                            and x["cfg_scale"] == c)
                bad = cell["raw_clipping_percent"] > 1.0 or cell["nan_count"] > 0
                stats = (f'<div class="{"bad" if bad else ""}">latent std {fmt(cell["latent_std"])}, audio std '
                         f'{fmt(cell["raw_audio_std"])}<br>clip {fmt(cell["raw_clipping_percent"])} %, '
                         f'{fmt(cell["lufs"])} LUFS, NaN {cell["nan_count"]}<br>{fmt(cell["seconds"])} s</div>')
                figs = "".join(clip_figure(x, sr, f"seed {s}")
                               for x, s in zip(result["_audio"][cell["key"]], cell["seeds"], strict=True))
                out.append(f'<td class="l">{stats}{figs}</td>')
            out.append("</tr>")
        out.append("</table>")
        body.append(section(f"sampler {sampler}", "".join(out)))
    return page(f"sampleforge sweep — {result['prompt']}", body)


def write_report(result: dict[str, Any], out_dir: str | Path, name: str, html_text: str) -> tuple[Path, Path]:
    """Write ``<name>.json`` (keys starting with "_" left out) and ``<name>.html`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in result.items() if not k.startswith("_")}
    js = write_json(data, out / f"{name}.json")
    page_path = out / f"{name}.html"
    page_path.write_text(html_text, encoding="utf-8")
    return js, page_path


# --------------------------------------------------------------------------------------------------
# where reports go: a report replaces only an earlier report of its kind, and the check comes before any work


def is_report(path: str | Path, keys: Sequence[str]) -> bool:
    """Whether the file ``path`` is an earlier report of ours: a ``.html`` page that ``page`` wrote, or else a JSON
    object holding every one of ``keys`` (the keys of that kind of report)."""
    p = Path(path)
    try:
        if p.suffix == ".html":
            with p.open("rb") as f:
                head = f.read(1024).decode("utf-8", errors="replace")
            return PAGE_STAMP in head or head.startswith(_UNSTAMPED_HEAD)
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return False
    return isinstance(data, dict) and all(k in data for k in keys)


def check_report_file(path: str | Path, flag: str, kind: str, keys: Sequence[str],
                      pages: Sequence[str | Path] = ()) -> Path:
    """Fail at once (UserInputError naming ``flag``) when the JSON report of ``kind`` cannot go to ``path``: a name
    without .json, a folder, a parent folder that cannot be made or written, or an existing file that is not an
    earlier report of this kind (a JSON object with ``keys``); ``pages``: HTML files written beside it, checked
    alike. Makes no folder (``write_text`` does). Returns ``path``."""
    p = Path(path)
    if p.suffix != ".json":
        raise UserInputError(f"{flag}: {p} does not end in .json (the {kind} report is JSON)")
    if p.is_dir():
        raise UserInputError(f"{flag}: {p} is a folder, not a file")
    _check_folder(p.parent, flag)
    for f in (p, *map(Path, pages)):
        _refuse_other(f, flag, kind, keys, "file")
    return p


def check_report_folder(out_dir: str | Path, flag: str, kind: str, keys: Sequence[str],
                        names: Sequence[str]) -> Path:
    """Fail at once (UserInputError naming ``flag``) when the report of ``kind`` cannot be written into ``out_dir``
    as ``names`` (e.g. sweep.json, sweep.html): a file in the way of the folder, a folder that cannot be written,
    or one of those files existing without being an earlier report of this kind. Makes no folder (``write_report``
    and ``write_text`` do)."""
    out = Path(out_dir)
    _check_folder(out, flag)
    for name in names:
        _refuse_other(out / name, flag, kind, keys, "folder")
    return out


def _check_folder(folder: Path, flag: str) -> None:
    """The folder, or the nearest one of its parents that exists, takes a file. Nothing is made: a command
    refused later (a bad model, a missing reference) leaves no empty folder; ``write_text`` makes it."""
    problem = file_in_the_way(folder)
    if problem:
        raise UserInputError(f"{flag}: {problem}")
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), Path("."))
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".sampleforge-probe-"):
            pass
    except OSError as exc:
        raise UserInputError(f"{flag}: cannot write to {existing} ({exc.strerror or exc})") from None


def write_text(path: str | Path, text: str) -> Path:
    """``text`` to ``path`` (UTF-8), making its folder: a report's place was checked, not made, before the work."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def _refuse_other(path: Path, flag: str, kind: str, keys: Sequence[str], other: str) -> None:
    if path.is_dir():
        raise UserInputError(f"{flag}: {path} is a folder, not a file")
    if path.exists() and not is_report(path, keys):
        raise UserInputError(f"{flag}: {path} exists and is not an earlier {kind} report; not replaced (remove it, "
                             f"or name another {other})")
