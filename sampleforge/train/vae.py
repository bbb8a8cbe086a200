"""Stage 1: the mel VAE. L1 reconstruction of the normalised log-mel + a small KL term (+ optionally an L1 on
the frame-to-frame differences, ``recipe.delta_weight``: plain L1 lets a time-compressing VAE smear a clap's
bursts and a hat's decay into a blur that is cheap in L1 but judged as another instrument).

``recipe.low_band_weight`` weighs the bands below ``LOW_BAND_HZ`` more: they are 4 of 128 bands but hold a
kick's body and a low tom's pitch. Unweighted, a time ÷ 4 VAE decoded real kicks about 5 dB too thin below
150 Hz, and the share of energy below 120 Hz of its round trips no longer followed the original's.

The clips' log-mels are computed once and held in memory (582 real clips: ~50 MB); augmentation is done in
the log-mel domain, where it costs nothing: a gain offset (±``GAIN_DB``) and a spectral tilt (±``TILT_DB``
from the lowest to the highest band). Waveform-domain augmentation (pitch shift by resampling) cost ~40 ms a
clip on this CPU, as much as the VAE's own step.

Export measures the latent scale factor (1 / std of the posterior means over the training clips) and writes it
into the model config, so that diffusion sees ~unit-variance latents.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sampleforge.audio.mel import mel_centers
from sampleforge.devices import normal, uniform
from sampleforge.models.vae import MelVAE
from sampleforge.train.losses import kl_normal
from sampleforge.train.stage import StageContext, TensorItems

log = logging.getLogger(__name__)

LOW_BAND_HZ = 150.0
GAIN_DB = 6.0
TILT_DB = 3.0
_DB_TO_LN = 0.1151292546  # ln(10) / 20: a dB offset in natural-log magnitude units


def augment_mels(mel: Tensor, generator: torch.Generator, floor: float) -> Tensor:
    """(B, n_mels, F) log-mels → random gain and tilt per clip, in the log domain (floor kept as floor)."""
    b, n, _ = mel.shape
    gain = (uniform((b, 1, 1), generator, mel.device) * 2 - 1) * GAIN_DB * _DB_TO_LN
    tilt = (uniform((b, 1, 1), generator, mel.device) * 2 - 1) * TILT_DB * _DB_TO_LN
    ramp = torch.linspace(-0.5, 0.5, n, device=mel.device).view(1, n, 1)
    out = mel + gain + tilt * ramp
    return torch.where(mel <= floor + 1e-3, mel, out.clamp(min=floor))


def load_grown(vae: MelVAE, file: Path) -> int:
    """Load a trained VAE's ``file`` into ``vae``, whose decoder may have more refine blocks than it
    (``vae.refine_blocks``): those keep their identity initialisation. Returns how many were added; any other
    mismatch is a CheckpointError naming the key."""
    from sampleforge.bundle import load_checked, read_state

    saved = read_state(file)
    new = {k: v for k, v in vae.state_dict().items() if k.startswith("decoder.refine.") and k not in saved}
    load_checked(vae, {**saved, **new}, file.name)
    return len({k.split(".")[2] for k in new})


class VAETask:
    """``decoder_only``: fine-tune the decoder of the exported VAE with its encoder frozen. The latent space
    stays the same, so a diffusion model already trained on it stays valid (stage ``vae-decoder``)."""

    name = "vae"

    def __init__(self, ctx: StageContext, decoder_only: bool = False) -> None:
        self.ctx = ctx
        self.model = MelVAE(ctx.model_config.vae)
        if decoder_only:
            from sampleforge.errors import UserInputError

            ctx.load_model_config()
            self.model.cfg.scale_factor = ctx.model_config.vae.scale_factor
            vae_file = ctx.model_dir / "vae.safetensors"
            if not vae_file.is_file():
                raise UserInputError(f"{vae_file} not found: train the VAE first (`sampleforge train vae`)")
            grown = load_grown(self.model, vae_file)
            if grown:
                log.info("vae-decoder: %d refine blocks added to the trained decoder", grown)
            self.model.encoder.requires_grad_(False)
            self.name = "vae-decoder"
        low = torch.from_numpy(mel_centers(ctx.model_config.mel) < LOW_BAND_HZ).float()
        self.band_weight = (1.0 + ctx.recipe.low_band_weight * low).view(1, -1, 1)  # (1, n_mels, 1)
        plain = ctx.dataset(augment=False)
        self._dataset = TensorItems(torch.cat([b["mel"] for b in ctx.batches(plain)]))

    def dataset(self) -> Any:
        return self._dataset

    def settings(self) -> dict[str, dict[str, Any]]:
        """The data and recipe settings this stage trains by (its checkpoints record them)."""
        return self.ctx.settings(self.name)

    def collate(self, items: list[Tensor]) -> dict[str, Any]:
        return {"mel": torch.stack(items)}

    def loss(self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        vae: MelVAE = model  # type: ignore[assignment]
        cfg = vae.cfg
        mel = batch["mel"]  # (B, 128, F)
        if self.ctx.data.augment:
            mel = augment_mels(mel, generator, cfg.log_floor)
        mean, logvar = vae.posterior(mel)
        noise = normal(mean.shape, generator, mean.device)
        z = mean + torch.exp(0.5 * logvar) * noise
        rec = vae.decode_unscaled(z, mel.shape[-1], clamp=False)
        # in normalised units; below-floor predictions of floor targets are not penalised
        rec_n = (torch.maximum(rec, torch.full_like(rec, cfg.log_floor)) - cfg.mel_mean) / cfg.mel_std
        target_n = (mel - cfg.mel_mean) / cfg.mel_std
        band_weight = self.band_weight.to(mel.device)
        l1 = torch.mean(torch.abs(rec_n - target_n) * band_weight)
        kl = kl_normal(mean, logvar)
        loss = l1 + self.ctx.recipe.kl_weight * kl
        logs = {"l1": l1.detach(), "kl": kl.detach()}
        if self.ctx.recipe.delta_weight > 0:  # frame-to-frame change: what makes a clap a clap, a hat a hat
            delta = torch.mean(torch.abs(rec_n.diff(dim=-1) - target_n.diff(dim=-1)) * band_weight)
            loss = loss + self.ctx.recipe.delta_weight * delta
            logs["delta"] = delta.detach()
        return loss, logs

    @torch.no_grad()
    def preview(self, model: nn.Module, out_dir: Path, step: int) -> None:
        vae: MelVAE = model  # type: ignore[assignment]
        mel = self.ctx.preview_mels()
        rec = vae.decode_unscaled(vae.posterior(mel)[0], mel.shape[-1])
        self.ctx.write_preview(out_dir, {"original": mel, "reconstruction": rec})

    @torch.no_grad()
    def export(self, model: nn.Module, out_dir: Path) -> None:
        vae: MelVAE = model  # type: ignore[assignment]
        vae.eval()
        mels = self._dataset.data[:1024]
        means = [vae.posterior(mels[i : i + 64])[0] for i in range(0, mels.shape[0], 64)]
        std = float(torch.cat(means).std())
        vae.cfg.scale_factor = 1.0 / max(std, 1e-6)
        self.ctx.model_config.vae.scale_factor = vae.cfg.scale_factor
        self.ctx.save_component("vae", vae, out_dir)
