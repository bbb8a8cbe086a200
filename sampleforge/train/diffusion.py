"""Stage 2: the latent U-Net and the keyword encoder, on cached VAE latents, with keyword dropout (for CFG).

The latents of ``recipe.latent_variants`` augmented versions of every clip are encoded once with the trained
VAE (posterior means, scaled) and cached in ``RUN/diffusion/latents.safetensors`` keyed by a hash of the VAE
weights and the clip list; training then touches no audio. The loss is the MSE between the U-Net's output and
the target of the model's prediction type (eps, v, x0 or flow velocity, ``diffusion/prediction.py``) at a
uniformly drawn noise level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from sampleforge.bundle import load_state
from sampleforge.data.dataset import DrumDataset
from sampleforge.devices import normal, uniform
from sampleforge.diffusion.prediction import get_prediction, training_example
from sampleforge.errors import CheckpointError, SampleforgeError, UserInputError
from sampleforge.models.text import KeywordEncoder, keyword_dropout
from sampleforge.models.unet import LatentUNet
from sampleforge.models.vae import MelVAE
from sampleforge.taxonomy import CATEGORY_PROMPTS
from sampleforge.text.keywords import Vocabulary
from sampleforge.train.checkpoint import checkpoint_path, read_meta
from sampleforge.train.stage import StageContext

log = logging.getLogger(__name__)
PREVIEW_STEPS = 25  # previews during training: half the default steps, the default guidance


def _unet(model: nn.Module) -> LatentUNet:
    return cast(LatentUNet, model.get_submodule("unet"))


def _text(model: nn.Module) -> KeywordEncoder:
    return cast(KeywordEncoder, model.get_submodule("text"))


def _collate(items: list[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    return tuple(torch.stack(col) for col in zip(*items, strict=True))


def latent_cache_key(vae_bytes: bytes, clips: Any, settings: Any, scale_factor: float) -> str:
    """The name of a run's cached latents: the VAE file, the clips, the encoding settings and the scale factor
    the latents are multiplied by (it lives in the model's config.json, not in the VAE file)."""
    h = hashlib.sha256(vae_bytes)
    h.update(repr(clips).encode())
    h.update(repr(settings).encode())
    h.update(repr(float(scale_factor)).encode())
    return h.hexdigest()[:16]


def class_repeats(categories: list[str], balance: float, cap: int = 4) -> list[int]:
    """How many times each clip is repeated so that rare classes weigh more: round((median class count /
    class count) ** balance), between 1 and ``cap``. ``balance`` 0 = no repetition, 1 = (nearly) equal classes.
    With 15 real claps against 90 snares, an unbalanced model learns "clap" from a few dozen rows a pass."""
    from collections import Counter
    from statistics import median

    counts = Counter(categories)
    if balance <= 0 or not counts:
        return [1] * len(categories)
    mid = median(counts.values())
    return [min(cap, max(1, round((mid / counts[c]) ** balance))) for c in categories]


def class_prompt_dropout(ids: Tensor, knobs: Tensor, class_ids: Tensor, p: float,
                         generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """With probability ``p`` per row, the keyword ids (B, L) become the row's class words ``class_ids`` (B, L)
    and every knob (B, K) is unset (NaN): the condition a plain prompt ("crash") gives at sampling, trained on
    every recorded clip of the class. Rows whose ``class_ids`` are all padding (synthesised clips) keep their
    prompt. Returns new (ids, knobs); ``p == 0`` returns the inputs and draws nothing."""
    if p == 0:
        return ids, knobs
    swap = uniform((ids.shape[0], 1), generator, ids.device) < p
    swap &= (class_ids != KeywordEncoder.PAD_ID).any(dim=1, keepdim=True)
    return torch.where(swap, class_ids, ids), knobs.masked_fill(swap, float("nan"))


def jitter_knobs(knobs: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Set knobs (B, K) plus Gaussian noise of ``std``, clamped to 0-1; unset (NaN) knobs stay unset. A model
    trained on exact quantiles can map neighbouring knob values onto unrelated training clips (a sweep that
    goes up and down); the noise asks for a sound that changes smoothly with the knob."""
    if std <= 0:
        return knobs
    noise = normal(knobs.shape, generator, knobs.device)
    return (knobs + std * noise).clamp(0.0, 1.0)  # NaN + noise stays NaN; clamp keeps NaN


def init_vocabulary(folder: Path, built: Vocabulary, size: int) -> Vocabulary:
    """The keywords of a run that starts from a model folder (``recipe.init["diffusion"]``): the folder's own
    (its vocab.json), so that every keyword id keeps its meaning whatever clips the run trains on, and the words
    of this run's clips (``built``) that the folder does not know, on the free rows of the keyword encoder's
    table (``size``, the folder's ``text.vocab_size``), where they start untrained. Words beyond that room are
    dropped from their prompts. Both get a log line. Raises UserInputError when the folder has no vocabulary."""
    vocab_file = folder / "vocab.json"
    if not folder.is_dir() or not vocab_file.is_file():
        raise UserInputError(f"recipe.init.diffusion: {folder} is not a model folder (no vocab.json)")
    return extend_vocabulary(Vocabulary.load(vocab_file), built, size, str(folder))


def extend_vocabulary(own: Vocabulary, built: Vocabulary, size: int, whose: str) -> Vocabulary:
    """``own`` (the keywords a trained keyword encoder's rows stand for, ``whose``), with the words of ``built``
    it lacks on the free rows of a table of ``size``; words beyond that room are dropped from their prompts.
    Both get a log line."""
    vocab, added, left_out = own.extended(built, size)
    if added:
        log.info("diffusion: %d new keyword(s) of the training clips, ids %d-%d: %s", len(added),
                 vocab.id_of(added[0]), vocab.id_of(added[-1]), ", ".join(added))
    if left_out:
        log.info("diffusion: %d keyword(s) of the training clips are left out: the keyword encoder of %s has "
                 "room for %d words: %s", len(left_out), whose, size - 1, ", ".join(left_out))
    return vocab


def run_vocabulary(stage_dir: Path, model_dir: Path) -> Vocabulary | None:
    """The keywords of the checkpoint in ``stage_dir``, the run a resume continues (None: no checkpoint): what it
    saved, or for a checkpoint that saved none, the run's ``model_dir/vocab.json`` (written when it began)."""
    path = checkpoint_path(stage_dir)
    if not (path / "state.json").is_file():
        return None
    saved = (read_meta(path).get("task_state") or {}).get("vocab")
    try:
        if saved is not None:
            return Vocabulary.from_dict(saved)
        if (model_dir / "vocab.json").is_file():
            return Vocabulary.load(model_dir / "vocab.json")
    except SampleforgeError as exc:
        raise CheckpointError(f"{path}: its keywords are unreadable ({exc})") from None
    return None


def vae_identity(vae: MelVAE) -> str:
    """A hash of what makes a VAE's latents: its encoder's weights and its scale factor (a decoder trained on,
    stage ``vae-decoder``, keeps them)."""
    h = hashlib.sha256(repr(float(vae.cfg.scale_factor)).encode())
    for name, value in sorted(vae.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def take_init_vae(model_dir: Path, folder: Path) -> None:
    """A run that starts from a model folder trains on that folder's VAE latents: copy its ``vae.safetensors``
    and ``config.json`` (and its vocoder, which the run does not touch, if it has one) into the run's
    ``model_dir`` the first time. Raises UserInputError when the folder has no VAE, or when the run already
    holds a different one (the start was rebuilt since the run began)."""
    import shutil

    src, dst = folder / "vae.safetensors", model_dir / "vae.safetensors"
    if not src.is_file() or not (folder / "config.json").is_file():
        raise UserInputError(f"recipe.init.diffusion: {folder} is not a model folder (no vae.safetensors or "
                             "config.json)")
    if dst.is_file():
        if dst.read_bytes() != src.read_bytes():
            raise UserInputError(f"recipe.init.diffusion: {dst} is not the VAE of {folder} (changed since this run "
                                 f"began?): delete {model_dir.parent} to start the run over from it")
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    if not (model_dir / "config.json").is_file():
        shutil.copyfile(folder / "config.json", model_dir / "config.json")
    if (folder / "vocoder.safetensors").is_file() and not (model_dir / "vocoder.safetensors").is_file():
        shutil.copyfile(folder / "vocoder.safetensors", model_dir / "vocoder.safetensors")
    shutil.copyfile(src, model_dir / "vae.safetensors.tmp")  # last: its presence says the copy is complete
    (model_dir / "vae.safetensors.tmp").replace(dst)


def start_from(model: nn.Module, folder: Path) -> None:
    """Load a model folder's U-Net and keyword encoder into ``model`` (``recipe.init["diffusion"]``; its
    keywords are taken with :func:`init_vocabulary`). Raises UserInputError naming what does not fit."""
    if not folder.is_dir():
        raise UserInputError(f"recipe.init.diffusion: {folder} is not a model folder")
    try:
        load_state(_unet(model), folder / "unet.safetensors")
        load_state(_text(model), folder / "text.safetensors")
    except CheckpointError as exc:
        raise UserInputError(f"recipe.init.diffusion: {folder}: {exc}") from None


class DiffusionTask:
    name = "diffusion"

    def __init__(self, ctx: StageContext) -> None:
        """Reads the trained VAE, the clips and what a checkpoint of this stage says; writes nothing into the
        model folder (RUN/model): the vocabulary, the config and the timbre table go there with the weights
        (``export``), so that a run refused at its start (a checkpoint without --resume, another architecture)
        leaves the finished model as it was."""
        self.ctx = ctx
        named = ctx.recipe.init.get("diffusion")
        init = Path(named) if named else None  # a model folder the U-Net and keyword encoder start from
        if init is not None:
            take_init_vae(ctx.model_dir, init)
        ctx.load_model_config()
        cfg = ctx.model_config
        vae_file = ctx.model_dir / "vae.safetensors"
        if not vae_file.is_file():
            raise UserInputError(f"{vae_file} not found: train the VAE first (`sampleforge train vae --out {ctx.run_dir}`)")
        self.vae = MelVAE(cfg.vae)
        load_state(self.vae, vae_file)
        self.vae.eval().requires_grad_(False)
        built = Vocabulary.build([list(c.keywords) for c in ctx.clips], min_count=ctx.data.min_count,
                                 categories=[c.category for c in ctx.clips])
        if len(built) <= 1:
            raise UserInputError(f"data.min_count {ctx.data.min_count}: no keyword of the training clips is that "
                                 "common, so the model would ignore every prompt (lower it)")
        own = run_vocabulary(ctx.run_dir / self.name, ctx.model_dir)
        if own is not None:  # the checkpoint's keyword ids keep their meaning, whatever clips it resumes on
            self.vocab = extend_vocabulary(own, built, cfg.text.vocab_size, "the run's checkpoint")
        elif init is not None:
            self.vocab = init_vocabulary(init, built, cfg.text.vocab_size)
        else:
            self.vocab = built
        cfg.text.vocab_size = max(cfg.text.vocab_size, len(self.vocab))
        self.vae_identity = vae_identity(self.vae)
        self._timbre_table: dict[str, Any] | None = None
        self.model: nn.Module = nn.ModuleDict({"unet": LatentUNet(cfg.unet), "text": KeywordEncoder(cfg.text)})
        if init is not None:
            start_from(self.model, init)
            log.info("diffusion: U-Net and keyword encoder start from %s", init)
        self.prediction = get_prediction(cfg.diffusion.prediction)
        self.alphas_cumprod = None if self.prediction.flow else cfg.diffusion.alphas_cumprod().float()
        self._dataset = self._latent_dataset(vae_file)

    # -- what a checkpoint carries besides the weights -------------------------------------------------
    def extra_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The run's keywords (their ids are the keyword encoder's rows) and the VAE whose latents it learns."""
        return {}, {"vocab": self.vocab.to_dict(), "vae": self.vae_identity}

    def load_extra_state(self, tensors: dict[str, Tensor], state: Any, where: str) -> None:
        """Refuse to resume on the latents of another VAE encoder (a VAE trained again since the run began)."""
        saved = state.get("vae") if isinstance(state, dict) else None
        if saved is not None and saved != self.vae_identity:
            raise CheckpointError(
                f"{where}: trained on the latents of another VAE (its encoder or scale changed since this stage "
                f"began); start the diffusion stage anew: remove {self.ctx.run_dir / self.name} or choose "
                "another --out")

    # -- data ------------------------------------------------------------------------------------------
    def _latent_dataset(self, vae_file: Path) -> TensorDataset:
        """Cached latents (N, C, W) with their keyword ids (N, L), knob quantiles (N, K) and the ids of their
        class's own words (N, L; ``class_prompt_dropout``)."""
        ctx = self.ctx
        plain = ctx.dataset(augment=False)  # its cache hashes each file once: a replaced clip is encoded anew
        key = latent_cache_key(vae_file.read_bytes(),
                               [(str(c.path), plain.cache.file_hash(c.path), c.category, c.keywords) for c in ctx.clips],
                               (ctx.recipe.latent_variants, ctx.data.augment, ctx.data.duration, ctx.seed),
                               self.vae.cfg.scale_factor)
        cache = ctx.run_dir / "diffusion" / f"latents-{key}.safetensors"
        latents = None
        if cache.is_file():
            try:
                latents = load_file(str(cache))["latents"]
            except (SafetensorError, OSError, KeyError) as exc:
                log.warning("%s: unreadable (%s); encoding the latents again", cache, exc)
        if latents is None:
            latents = self._encode_all()
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(cache.name + ".tmp")
            save_file({"latents": latents}, str(tmp))
            os.replace(tmp, cache)
        max_tokens = ctx.model_config.text.max_tokens
        rows = []
        for clip in ctx.clips:
            ids = [self.vocab.id_of(w) for w in clip.keywords if w in self.vocab][:max_tokens]
            rows.append(ids + [0] * (max_tokens - len(ids)))
        id_table = torch.tensor(rows, dtype=torch.long).repeat(ctx.recipe.latent_variants, 1)
        # the plain class prompt is trained on recordings only: the judge takes 70 % of the synthesised claps for
        # cymbals and most synthesised closed hats for open hats or shakers, which widened "clap" and "closed hat"
        class_table = self.vocab.encode_batch([CATEGORY_PROMPTS[c.category] for c in ctx.clips], max_tokens)[0]
        class_table[torch.tensor([c.generated for c in ctx.clips], dtype=torch.bool)] = KeywordEncoder.PAD_ID
        class_table = class_table.repeat(ctx.recipe.latent_variants, 1)
        knob_table = self._knob_table(plain).repeat(ctx.recipe.latent_variants, 1)
        repeats = class_repeats([c.category for c in ctx.clips], ctx.recipe.class_balance)
        if max(repeats) > 1:
            index = torch.tensor(repeats).repeat(ctx.recipe.latent_variants)
            rows_idx = torch.repeat_interleave(torch.arange(latents.shape[0]), index)
            latents, id_table, knob_table, class_table = (t[rows_idx] for t in (latents, id_table, knob_table, class_table))
            log.info("class balance %.2f: %d latent rows (rare classes repeated up to %dx)",
                     ctx.recipe.class_balance, latents.shape[0], max(repeats))
        return TensorDataset(latents, id_table, knob_table, class_table)

    def _knob_table(self, ds: DrumDataset) -> Tensor:
        """(N, K) per-class quantiles of the knobs the text config names, for every training clip (measured on
        the unaugmented clips ``ds`` once, by ``recipe.timbre_features``' definitions, cached in RUN/diffusion/timbre.json
        with the per-class feature tables)."""
        from sampleforge.timbre import KNOBS, class_quantiles, measure

        ctx = self.ctx
        names = ctx.model_config.text.knobs
        if not names:
            return torch.zeros(len(ctx.clips), 0)
        cache = ctx.run_dir / "diffusion" / "timbre.json"
        version = ctx.recipe.timbre_features
        stored: Any = {}
        if cache.is_file():
            try:
                stored = json.loads(cache.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                log.warning("%s: unreadable (%s); measuring the clips again", cache, exc)
        # {"features": version, "clips": {path#content: features}}; another version or form is stale
        fresh = isinstance(stored, dict) and stored.get("features") == version and isinstance(stored.get("clips"), dict)
        known: dict[str, dict[str, float]] = stored["clips"] if fresh else {}
        feats = []
        for i, clip in enumerate(tqdm(ctx.clips, desc="measuring timbre", unit="clip", disable=None)):
            key = f"{clip.path}#{ds.cache.file_hash(clip.path)[:16]}"  # a replaced file is measured anew
            if key not in known:
                known[key] = measure(ds.waveform(i), ctx.model_config.sample_rate, version)
            feats.append(known[key])
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp")
        tmp.write_text(json.dumps({"features": version, "clips": known}), encoding="utf-8")
        os.replace(tmp, cache)
        q = class_quantiles(feats, [c.category for c in ctx.clips])  # (N, len(KNOBS))
        self._write_timbre_table(feats, q)
        return torch.from_numpy(q[:, [KNOBS.index(k) for k in names]])

    def _write_timbre_table(self, feats: list[dict[str, float]], quantiles: Any) -> None:
        """The model's timbre.json (written by ``export``): per class and knob, the feature value at quantiles
        0.1, 0.5 and 0.9 (what a knob value means in seconds, Hz, octaves or dB), and what each word means for
        each class (``timbre.class_word_knobs`` over the clips' (N, K) ``quantiles``)."""
        import numpy as np

        from sampleforge.timbre import KNOBS, class_word_knobs

        table: dict[str, dict[str, list[float]]] = {}
        cats = [c.category for c in self.ctx.clips]
        for cat in sorted(set(cats)):
            rows = [f for f, c in zip(feats, cats, strict=True) if c == cat]
            table[cat] = {k: [round(float(np.quantile([r[k] for r in rows], q)), 4) for q in (0.1, 0.5, 0.9)]
                          for k in KNOBS}
        real = [i for i, c in enumerate(self.ctx.clips) if not c.generated]  # words mean what recordings say
        words = class_word_knobs(quantiles[real], [cats[i] for i in real], [self.ctx.clips[i].keywords for i in real])
        self._timbre_table = {"features": self.ctx.recipe.timbre_features, "quantiles": [0.1, 0.5, 0.9],
                              "classes": table, "words": words}

    @torch.no_grad()
    def _encode_all(self) -> Tensor:
        ctx = self.ctx
        variants = ctx.recipe.latent_variants
        ds = ctx.dataset(augment=ctx.data.augment)
        out = []
        with tqdm(total=variants * len(ds), desc="encoding latents", unit="clip", disable=None) as bar:  # None: off without a TTY
            for v in range(variants):
                if hasattr(ds, "set_epoch"):
                    ds.set_epoch(v)
                for batch in ctx.batches(ds):
                    out.append(self.vae.encode(batch["mel"]))
                    bar.update(batch["mel"].shape[0])
        return torch.cat(out)

    def dataset(self) -> Any:
        return self._dataset

    def settings(self) -> dict[str, dict[str, Any]]:
        """The data and recipe settings this stage trains by (its checkpoints record them)."""
        return self.ctx.settings(self.name)

    def collate(self, items: list[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
        return _collate(items)

    # -- loss ------------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: tuple[Tensor, ...], generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        x0, ids, knobs, class_ids = batch
        ids, knobs = class_prompt_dropout(ids, knobs, class_ids, self.ctx.recipe.class_prompt_dropout, generator)
        ids = keyword_dropout(ids, self.ctx.recipe.keyword_dropout, generator)
        if knobs.shape[1]:
            knobs = KeywordEncoder.knob_dropout(knobs, ids, self.ctx.recipe.knob_dropout, generator)
            knobs = jitter_knobs(knobs, self.ctx.recipe.knob_jitter, generator)
            cond = _text(model)(ids, knobs)
        else:
            cond = _text(model)(ids)
        ex = training_example(self.prediction, x0, generator, self.alphas_cumprod)
        pred = _unet(model)(ex.x_t, ex.time, cond)
        loss = torch.mean((pred - ex.target) ** 2)
        return loss, {}

    # -- previews and export ---------------------------------------------------------------------------
    def _bundle(self, model: nn.Module) -> Any:
        from sampleforge.bundle import Bundle

        return Bundle(config=self.ctx.model_config, vae=self.vae, unet=_unet(model), text=_text(model),
                      vocoder=None, vocab=self.vocab)

    @torch.no_grad()
    def preview(self, model: nn.Module, out_dir: Path, step: int) -> None:
        from sampleforge.pipeline import Generator

        was_training = model.training
        model.eval()
        gen = Generator(self._bundle(model), device="cpu")
        prompts = [CATEGORY_PROMPTS[c] for c in ("kick", "snare", "closed_hat", "clap")]
        result = gen.generate_full(prompts, n=1, steps=PREVIEW_STEPS, seed=0, vocoder=False)
        assert result.mels is not None
        self.ctx.write_preview(out_dir, {"generated": result.mels}, audio={p.replace(" ", "_"): result.audio[i : i + 1]
                                                                             for i, p in enumerate(prompts)})
        model.train(was_training)

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """The U-Net and keyword encoder, with the files that go with the encoder's rows: vocab.json and (a model
        with timbre knobs) timbre.json; ``StageContext.install_export`` puts them into the model folder."""
        self.ctx.save_component("unet", _unet(model), out_dir)
        self.ctx.save_component("text", _text(model), out_dir)
        self.vocab.save(out_dir / "vocab.json")
        if self._timbre_table is not None:
            (out_dir / "timbre.json").write_text(json.dumps(self._timbre_table, indent=1) + "\n", encoding="utf-8")
