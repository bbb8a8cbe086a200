"""A small log-mel CNN drum classifier: the judge of class adherence, and the embedding for Fréchet distance.

Input is our 128-band log-mel of a peak-normalised 2-s clip (``clip_logmels``); the network is five
conv blocks (3x3 conv, batch norm, GELU, 2x2 max-pool) and a global mean+max pool, then a linear
embedding (``embed``, the Fréchet embedding) and a linear head (``forward``). About 0.3 M parameters.

The shipped judge lives in ``weights/classifier-v2`` (``config.json`` + ``model.safetensors`` + a card
``README.md`` with per-class held-out accuracy), trained on the kits drums-v2 is trained on;
``sampleforge eval train-classifier`` rebuilds it. The earlier ``weights/classifier-v1`` (Hydrogen kits only)
loads by path (``sampleforge eval --classifier weights/classifier-v1``). Taxonomy classes with too few real
recordings are merged for evaluation (see ``class_map``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sampleforge.audio.mel import MelConfig, MelSpectrogram
from sampleforge.bundle import REPO_ROOT, resolve_model
from sampleforge.errors import CheckpointError
from sampleforge.eval.settings import CLASSIFIER_NAME
from sampleforge.strict import ConfigError, from_dict, to_dict

DEFAULT_CLASSIFIER = REPO_ROOT / "weights" / CLASSIFIER_NAME  # the shipped judge (`make train-classifier`)
PEAK = 0.95  # clips are peak-normalised to this before the mel, like generated clips


@dataclass
class ClassifierConfig:
    classes: list[str] = field(default_factory=lambda: ["kick", "snare"])  # output order
    # taxonomy category -> classifier class (a category absent from the map is not judged)
    class_map: dict[str, str] = field(default_factory=dict)
    sample_rate: int = 44100
    duration: float = 2.0  # seconds: clips are cropped / zero-padded to this
    n_mels: int = 128
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 128])
    embed_dim: int = 128
    dropout: float = 0.2
    input_mean: float = -8.0  # log-mel normalisation, fitted on the training clips
    input_std: float = 3.0

    def judged_class(self, category: str) -> str | None:
        """The classifier class that judges taxonomy ``category``, or None if it is not judged."""
        if category in self.class_map:
            return self.class_map[category]
        return category if category in self.classes else None


class DrumClassifier(nn.Module):
    """log-mel (B, n_mels, F) → logits (B, K); ``embed`` → (B, embed_dim)."""

    def __init__(self, cfg: ClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        blocks: list[nn.Module] = []
        c_in = 1
        for c in cfg.channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.GELU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.to_embed = nn.Sequential(nn.Linear(2 * c_in, cfg.embed_dim), nn.GELU())
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.embed_dim, len(cfg.classes))

    def embed(self, logmel: Tensor) -> Tensor:
        """log-mel (B, n_mels, F) → embedding (B, embed_dim), the penultimate layer."""
        if logmel.dim() != 3 or logmel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected log-mel (B, {self.cfg.n_mels}, F), got {tuple(logmel.shape)}")
        x = (logmel.unsqueeze(1) - self.cfg.input_mean) / self.cfg.input_std  # (B, 1, M, F)
        h = self.features(x)  # (B, C, M/32, F/32)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 2C)
        return self.to_embed(pooled)

    def forward(self, logmel: Tensor) -> Tensor:
        """log-mel (B, n_mels, F) → logits (B, K)."""
        return self.head(self.dropout(self.embed(logmel)))


def fix_length(wav: np.ndarray | Tensor, samples: int) -> Tensor:
    """(B, T) or (T,) → float32 (B, samples): cropped at the end or zero-padded."""
    t = torch.as_tensor(np.asarray(wav) if not isinstance(wav, Tensor) else wav, dtype=torch.float32)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.shape[1] >= samples:
        return t[:, :samples]
    return torch.nn.functional.pad(t, (0, samples - t.shape[1]))


def clip_logmels(wav: np.ndarray | Tensor, cfg: ClassifierConfig, mel: MelSpectrogram | None = None) -> Tensor:
    """Waveforms (B, T) at ``cfg.sample_rate`` → classifier input log-mel (B, n_mels, F).

    Crops/pads to ``cfg.duration``, replaces non-finite samples by 0 and peak-normalises each clip to 0.95.
    """
    x = fix_length(wav, int(round(cfg.duration * cfg.sample_rate)))
    x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    peak = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    x = x / peak * PEAK
    mel = mel or MelSpectrogram(MelConfig(sample_rate=cfg.sample_rate, n_mels=cfg.n_mels))
    with torch.no_grad():
        return mel(x)


@torch.inference_mode()
def embed_and_classify(
    model: DrumClassifier, wav: np.ndarray | Tensor, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Waveforms (B, T) → (embeddings (B, E), class probabilities (B, K)), batched, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    mel = MelSpectrogram(MelConfig(sample_rate=model.cfg.sample_rate, n_mels=model.cfg.n_mels)).to(device)
    wav_t = fix_length(wav, int(round(model.cfg.duration * model.cfg.sample_rate)))
    embs, probs = [], []
    for i in range(0, wav_t.shape[0], batch_size):
        lm = clip_logmels(wav_t[i : i + batch_size].to(device), model.cfg, mel)
        e = model.embed(lm)
        embs.append(e.cpu())
        probs.append(torch.softmax(model.head(e), dim=1).cpu())
    if not embs:
        return np.zeros((0, model.cfg.embed_dim)), np.zeros((0, len(model.cfg.classes)))
    return torch.cat(embs).numpy(), torch.cat(probs).numpy()


def save_classifier(model: DrumClassifier, out_dir: str | Path, card: str) -> Path:
    """Write ``config.json``, ``model.safetensors`` and the card ``README.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(to_dict(model.cfg), indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    (out / "README.md").write_text(card)
    return out


def shipped_classifier() -> Path:
    """The shipped classifier's folder, found like a shipped model (``bundle.weights_dirs``)."""
    try:
        return resolve_model(CLASSIFIER_NAME)
    except CheckpointError:
        return DEFAULT_CLASSIFIER  # missing: the caller's error names where it belongs


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> DrumClassifier:
    """Load a classifier folder (default: the shipped ``weights/classifier-v2``) in eval mode. Never unpickles."""
    folder = Path(path) if path is not None else shipped_classifier()
    if not folder.exists():  # a shipped classifier's name ("classifier-v2"), found like a shipped model
        try:
            folder = resolve_model(folder)
        except CheckpointError:
            pass  # the missing file's error below names it
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, weights):
        if not p.is_file():
            raise CheckpointError(
                f"{p}: missing; the drum classifier is a folder with config.json and model.safetensors "
                "(rebuild it with `sampleforge eval train-classifier`)"
            )
    try:
        cfg = from_dict(ClassifierConfig, json.loads(cfg_path.read_text()), where=str(cfg_path))
    except (json.JSONDecodeError, ConfigError) as exc:
        raise CheckpointError(f"{cfg_path}: {exc}") from None
    model = DrumClassifier(cfg)
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors' own error: truncated, bad header, not safetensors at all
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
        raise CheckpointError(f"{weights}: {what}; does it match {cfg_path.name}?")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{weights}: {k!r} has shape {tuple(v.shape)}, config expects {tuple(expected[k].shape)}")
    model.load_state_dict(state)
    return model.to(device).eval()
