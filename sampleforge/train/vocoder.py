"""Stage 3: the vocoder. "magnitude" head: L1 on log-magnitude + spectral convergence against the real STFT of
the clip (the phase is reconstructed at inference). "istft" head: the multi-resolution STFT loss of the
waveform (the measure ``sampleforge eval`` compares vocoders by), plus the same magnitude loss on the head's
own STFT magnitude (it learns the magnitude without waiting for the phase) and the log-mel L1 of the
waveform against its input. ``recipe.vocoder_mr_mel_weight`` adds the multi-resolution log-mel L1 of the
waveform against the clip (the measure ``eval vocoder`` reports as mr_logmel_l1: band envelopes at windows
256-2048, which see an attack's shape and the hop-rate flutter that the 2048-sample mel cannot). ``refine_iters``
is an inference option: training is on the plain inverse STFT.

"attack" head: the phase of the clip's first ``attack_frames`` STFT frames (crops from the onset), by the
magnitude-weighted cosine distance to the true phase, sum |S| (1 - cos(phase - true)) / sum |S|: a loss that
cares where the sound is, and whose minimum is the true phase (noise bins, whose phase is unpredictable, only
average out). The magnitude stays the mel inversion's.

``recipe.init["vocoder"]`` warm-starts a fresh run from other vocoder weights (``warm_start``): an istft vocoder's
backbone and the log-magnitude half of its head start a magnitude vocoder, so a hybrid (network magnitude + a
few Griffin-Lim iterations) need not relearn the mel features.

An istft vocoder may also learn against a discriminator (``recipe.vocoder_adversarial_weight`` > 0: the
multi-resolution spectrogram discriminator of ``train.adversarial``, its hinge and feature-matching terms added to
the loss above; the discriminator is saved in the run's checkpoint, not exported).

Trains on crops of ``recipe.vocoder_segment_frames`` frames; half the crops start at the onset (frame 0),
where the transient a drum is judged by lives, the rest anywhere in the sound (``random_crop``). The clips'
fixed-length waveforms are held in memory (582 clips: ~200 MB; an attack vocoder keeps only their start), with
``recipe.vocoder_variants`` augmented copies of each (pitch, EQ tilt, gain: ``data.dataset.augment``), and get a
random gain of ±6 dB per crop; mel and target come from the crop itself.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sampleforge.audio.finish import align_onset
from sampleforge.audio.griffinlim import TAIL_DB
from sampleforge.devices import uniform
from sampleforge.eval.metrics import mr_logmel_distance
from sampleforge.models.vocoder import Vocoder
from sampleforge.train.adversarial import Adversary
from sampleforge.train.losses import log_magnitude_l1, multi_resolution_stft_loss, spectral_convergence
from sampleforge.train.stage import StageContext, TensorItems

log = logging.getLogger(__name__)
GAIN_DB = 6.0
MAG_FLOOR = 1e-5  # "istft": the log floor of the magnitude loss (the eval's MR-STFT uses the same eps)


class VocoderTask:
    name = "vocoder"

    def __init__(self, ctx: StageContext) -> None:
        if ctx.model_config.vocoder is None:
            from sampleforge.errors import UserInputError

            raise UserInputError("the model config has no vocoder section (\"vocoder\": null): nothing to train")
        self.ctx = ctx
        self.model = Vocoder(ctx.model_config.vocoder, ctx.model_config.mel)
        init = ctx.recipe.init.get("vocoder")
        if init:
            copied = warm_start(self.model, Path(init))
            log.info("vocoder: %d tensors warm-started from %s", copied, init)
        # an attack vocoder sees only the start of each clip: keep only that
        cfg, hop = self.model.cfg, self.model.mel.cfg.hop_length
        seg = max(ctx.recipe.vocoder_segment_frames, cfg.attack_frames + self.model.receptive_frames)
        keep = (seg - 1) * hop if cfg.kind == "attack" else None
        waves = [torch.cat([b["wav"][..., :keep] for b in ctx.batches(ctx.dataset(augment=False))])]
        if ctx.recipe.vocoder_variants:
            # a pitch shift moves the onset by a few samples and an EQ tilt smears it: aligned again, as every
            # clip the vocoder meets is, or the phase of the attack (a few samples = radians at 10 kHz) is noise
            augmented, sr = ctx.dataset(augment=True), ctx.model_config.sample_rate
            for epoch in range(ctx.recipe.vocoder_variants):
                augmented.set_epoch(epoch)
                waves.append(torch.cat([torch.from_numpy(align_onset(b["wav"].numpy(), sr))[..., :keep]
                                        for b in ctx.batches(augmented)]))
        self._dataset = TensorItems(torch.cat(waves))
        waveform_terms = [key for key in ("vocoder_mr_mel_weight", "vocoder_adversarial_weight",
                                          "vocoder_feature_matching_weight") if getattr(ctx.recipe, key) > 0]
        if waveform_terms and cfg.kind != "istft":
            from sampleforge.errors import UserInputError

            raise UserInputError(f"recipe.{waveform_terms[0]} needs a vocoder that makes the waveform itself "
                                 f"(kind \"istft\"), not {cfg.kind!r}")
        self.adversary: Adversary | None = None
        if ctx.recipe.vocoder_adversarial_weight > 0 or ctx.recipe.vocoder_feature_matching_weight > 0:
            self.adversary = Adversary(lr=ctx.recipe.vocoder_discriminator_lr, ffts=ctx.recipe.vocoder_discriminator_ffts)

    def dataset(self) -> Any:
        return self._dataset

    def settings(self) -> dict[str, dict[str, Any]]:
        """The data and recipe settings this stage trains by (its checkpoints record them)."""
        return self.ctx.settings(self.name)

    def collate(self, items: list[Tensor]) -> dict[str, Any]:
        return {"wav": torch.stack(items)}

    def _crop(self, wav: Tensor, hop: int, generator: torch.Generator, onset_only: bool = False) -> Tensor:
        """(B, T) → a random gain and ``random_crop``."""
        gain = uniform((wav.shape[0], 1), generator, wav.device)
        gain = 10 ** ((gain * 2 - 1) * GAIN_DB / 20)
        return random_crop(wav * gain, hop, self.ctx.recipe.vocoder_segment_frames, generator, onset_only)

    def _attack_loss(self, voc: Vocoder, batch: dict[str, Any], generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        mc = voc.mel.cfg
        wav = self._crop(batch["wav"], mc.hop_length, generator, onset_only=True)  # the dataset holds the start only
        with torch.no_grad():
            spec = voc.mel.stft(wav)
            mel = voc.mel.mel_from_magnitude(spec.abs())
        phase = voc.attack_phase(mel)  # (B, K, A)
        target = spec[..., : phase.shape[-1]]
        weight = target.abs()
        loss = torch.sum(weight * (1 - torch.cos(phase - target.angle()))) / weight.sum().clamp(min=1e-7)
        return loss, {"phase": loss.detach()}

    def loss(self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        voc: Vocoder = model  # type: ignore[assignment]
        if voc.cfg.kind == "attack":
            return self._attack_loss(voc, batch, generator)
        wav = self._crop(batch["wav"], voc.mel.cfg.hop_length, generator)
        with torch.no_grad():
            target = voc.mel.magnitude(wav)  # (B, n_freqs, F)
            mel = voc.mel.mel_from_magnitude(target)
        if voc.cfg.kind == "magnitude":
            pred_log = voc.log_magnitude(mel)
            # log-magnitude L1 above the trust floor (bins ~100 dB below the loud ones are noise)
            floor = voc.cfg.trust_floor
            l1 = torch.mean(torch.abs(pred_log.clamp(min=math.log(floor)) - torch.log(target.clamp(min=floor))))
            sc = spectral_convergence(torch.exp(pred_log), target)
            return l1 + sc, {"logmag_l1": l1.detach(), "sc": sc.detach()}
        spec = voc.spectrum(mel)
        pred = voc.istft(spec, wav.shape[-1])
        mrstft = multi_resolution_stft_loss(pred, wav)
        mag = spec.abs()
        head = log_magnitude_l1(mag, target, MAG_FLOOR) + spectral_convergence(mag, target)
        mel_l1 = torch.mean(torch.abs(voc.mel(pred) - mel))
        total = mrstft + head + mel_l1
        metrics = {"mrstft": mrstft.detach(), "head_mag": head.detach(), "mel_l1": mel_l1.detach()}
        if self.ctx.recipe.vocoder_mr_mel_weight > 0:
            mr_mel = mr_logmel_distance(wav, pred, sample_rate=self.ctx.model_config.sample_rate).mean()
            total = total + self.ctx.recipe.vocoder_mr_mel_weight * mr_mel
            metrics["mr_mel"] = mr_mel.detach()
        if self.adversary is not None:
            recipe = self.ctx.recipe
            self.adversary.to(wav.device)
            metrics["disc"] = self.adversary.update(wav, pred)
            adv, fm = self.adversary.generator_terms(wav, pred)
            total = total + recipe.vocoder_adversarial_weight * adv + recipe.vocoder_feature_matching_weight * fm
            metrics.update(adv=adv.detach(), fm=fm.detach())
        return total, metrics

    def extra_state(self) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
        """The discriminator's weights and optimizer, for the run's checkpoint (None: no discriminator)."""
        return self.adversary.state() if self.adversary is not None else None

    def load_extra_state(self, tensors: dict[str, Tensor], meta: dict[str, Any] | None, where: str) -> None:
        if self.adversary is None:
            if meta is not None:
                log.warning("%s: the checkpoint's discriminator is not used (recipe.vocoder_adversarial_weight and "
                            "vocoder_feature_matching_weight are 0)", where)
            return
        if meta is None:
            log.warning("%s: the checkpoint has no discriminator; a fresh one starts now", where)
            return
        self.adversary.load_state(tensors, meta, where)

    @torch.no_grad()
    def preview(self, model: nn.Module, out_dir: Path, step: int) -> None:
        voc: Vocoder = model  # type: ignore[assignment]
        mel = self.ctx.preview_mels()
        self.ctx.write_preview(out_dir, {"griffin_lim": mel}, audio={"vocoder": voc(mel)})

    def export(self, model: nn.Module, out_dir: Path) -> None:
        self.ctx.save_component("vocoder", model, out_dir)


def random_crop(wav: Tensor, hop: int, seg: int, generator: torch.Generator, onset_only: bool = False) -> Tensor:
    """(B, T) → crops of ``seg`` frames ((seg - 1) * hop samples; the whole clip if ``seg`` is 0 or not shorter).
    Half the batches (all: ``onset_only``) start at the onset; in the others each clip gets its own start, drawn
    so that at least a quarter of the crop lies before the clip's last sounding hop (within TAIL_DB, 80 dB, of its
    loudest; one-shots are padded to the training length, and a crop anywhere in the clip would be mostly past the
    sound: 44 % of them wholly 60 dB down, on the Debian kits)."""
    frames = wav.shape[-1] // hop + 1
    if seg <= 0 or seg >= frames:
        return wav
    length = (seg - 1) * hop
    if onset_only or float(torch.rand((), generator=generator, device=generator.device)) < 0.5:
        return wav[..., :length]
    hops = wav.shape[-1] // hop
    energy = wav[:, : hops * hop].reshape(wav.shape[0], hops, hop).square().sum(dim=-1)  # (B, hops)
    sounding = energy > energy.amax(dim=1, keepdim=True) * 10 ** (TAIL_DB / 10)
    last = (sounding * torch.arange(hops, device=wav.device)).amax(dim=1)  # 0 for a silent clip
    highest = (last - seg // 4).clamp(min=0, max=frames - seg)
    u = uniform(wav.shape[0], generator, wav.device)
    starts = (u * (highest + 1)).long()
    index = starts[:, None] * hop + torch.arange(length, device=wav.device)
    return torch.gather(wav, 1, index)


def warm_start(model: Vocoder, source: Path) -> int:
    """Copy into ``model`` every tensor of ``source`` (a model folder or a ``.safetensors`` file) that has the
    same name and shape; the head of an istft vocoder ((2K, dim): log-magnitude rows, then phase rows) gives
    its log-magnitude rows to a magnitude head ((K, dim)) and its phase rows to an attack head. Returns the number of tensors copied; raises
    UserInputError if the file is missing or unreadable or nothing matches."""
    from sampleforge.bundle import read_state
    from sampleforge.errors import CheckpointError, UserInputError

    file = source / "vocoder.safetensors" if source.is_dir() else source
    if not file.is_file():
        raise UserInputError(f"recipe.init.vocoder: {file} does not exist")
    try:
        state = read_state(file)
    except CheckpointError as exc:
        raise UserInputError(f"recipe.init.vocoder: {exc}") from None
    own = model.state_dict()
    update: dict[str, Tensor] = {}
    for key, value in own.items():
        src = state.get(key)
        if src is None:
            continue
        if key.startswith("head.") and src.shape[0] == 2 * value.shape[0] and src.shape[1:] == value.shape[1:]:
            # an istft head's rows: log-magnitude then phase; a magnitude head takes the first, an attack head the second
            src = src[value.shape[0] :] if model.cfg.kind == "attack" else src[: value.shape[0]]
        if src.shape == value.shape:
            update[key] = src.to(value.dtype)
    if not update:
        raise UserInputError(f"recipe.init.vocoder: no tensor of {file} fits this vocoder config")
    model.load_state_dict(update, strict=False)
    return len(update)
