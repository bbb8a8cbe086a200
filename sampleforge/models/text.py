"""Condition encoder: keyword ids (B, L) and timbre knobs (B, K) -> one condition vector (B, cond_dim), plus a
learned null for CFG. The knobs (``sampleforge.timbre``) are optional: a model trained without them has none."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from sampleforge import strict
from sampleforge.devices import uniform
from sampleforge.errors import UserInputError


@dataclass
class TextConfig:
    vocab_size: int = 64  # embedding rows incl. padding id 0 (>= len(Vocabulary))
    embed_dim: int = 64  # keyword embedding width
    cond_dim: int = 128  # output condition width (the U-Net's conditioning input)
    hidden_dim: int = 256  # MLP hidden width
    max_tokens: int = 8  # keywords per prompt (Vocabulary.encode's max_tokens)
    knobs: list[str] = field(default_factory=list)  # timbre knobs conditioned on, in order (timbre.KNOBS)

    def __post_init__(self) -> None:
        from sampleforge.timbre import KNOBS

        unknown = [k for k in self.knobs if k not in KNOBS]
        if unknown or len(set(self.knobs)) != len(self.knobs):
            raise strict.ConfigError(f"text.knobs must be distinct names from {list(KNOBS)}, got {self.knobs}")
        strict.require_at_least("text", self, ("vocab_size", "embed_dim", "cond_dim", "hidden_dim", "max_tokens"))
        if self.vocab_size < 2:
            raise strict.ConfigError("text.vocab_size must be >= 2 (padding + at least one keyword)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TextConfig:
        """Strict: unknown keys or wrong types raise ConfigError naming them."""
        return strict.from_dict(cls, data, where="text")

    def to_dict(self) -> dict[str, Any]:
        return strict.to_dict(self)

    @classmethod
    def debug(cls) -> TextConfig:
        """A tiny config for tests."""
        return cls(vocab_size=16, embed_dim=8, cond_dim=16, hidden_dim=16, max_tokens=4)


class KeywordEncoder(nn.Module):
    """ids (B, L) (0 = padding) -> embeddings (B, L, E) -> masked mean (B, E) -> MLP -> cond (B, cond_dim),
    plus, when the config names knobs, an MLP of the knob values (B, K) (NaN = unset) and their set-mask.

    A row of padding only with no knob set (an empty or fully dropped prompt) maps to the learned null
    condition, the unconditional input of classifier-free guidance.
    """

    PAD_ID = 0

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=self.PAD_ID)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.embed_dim, cfg.hidden_dim), nn.SiLU(), nn.Linear(cfg.hidden_dim, cfg.cond_dim)
        )
        self.null_cond = nn.Parameter(torch.randn(cfg.cond_dim) * 0.02)  # (cond_dim,)
        k = len(cfg.knobs)
        self.knob_mlp = (
            nn.Sequential(nn.Linear(2 * k, cfg.hidden_dim), nn.SiLU(), nn.Linear(cfg.hidden_dim, cfg.cond_dim))
            if k else None
        )

    def forward(self, ids: Tensor, knobs: Tensor | None = None) -> Tensor:
        """ids (B, L) int64, knobs (B, K) float (NaN = unset; None = all unset) -> cond (B, cond_dim).
        Rows with no keyword and no knob -> the null condition."""
        self._check_ids(ids)
        mask = (ids != self.PAD_ID).unsqueeze(-1)  # (B, L, 1)
        emb = self.embed(ids) * mask  # (B, L, E)
        count = mask.sum(dim=1)  # (B, 1)
        pooled = emb.sum(dim=1) / count.clamp(min=1)  # (B, E)
        out = self.mlp(pooled)  # (B, cond_dim)
        out = torch.where(count > 0, out, self.null_cond.to(out.dtype).expand_as(out))
        if self.knob_mlp is None or knobs is None:
            return out
        if knobs.shape != (ids.shape[0], len(self.cfg.knobs)):
            raise UserInputError(f"knobs must be (B, {len(self.cfg.knobs)}) for {self.cfg.knobs}, got {tuple(knobs.shape)}")
        is_set = ~torch.isnan(knobs)  # (B, K)
        values = torch.where(is_set, knobs, torch.zeros_like(knobs)).to(out.dtype)
        feats = torch.cat([values * 2 - 1, is_set.to(out.dtype)], dim=1)  # (B, 2K)
        any_set = is_set.any(dim=1, keepdim=True)  # (B, 1)
        return out + torch.where(any_set, self.knob_mlp(feats), torch.zeros_like(out))

    def null(self, batch_size: int) -> Tensor:
        """The learned unconditional input -> (batch_size, cond_dim)."""
        return self.null_cond.unsqueeze(0).expand(batch_size, -1)

    @staticmethod
    def knob_dropout(knobs: Tensor, ids: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
        """Training: each knob becomes unset (NaN) with probability ``p``; rows whose keywords were all
        dropped lose every knob too (the null condition, for CFG). knobs (B, K), ids (B, L) -> new knobs."""
        drop = uniform(knobs.shape, generator, knobs.device) < p
        drop |= (ids == KeywordEncoder.PAD_ID).all(dim=1, keepdim=True)
        return knobs.masked_fill(drop, float("nan"))

    def _check_ids(self, ids: Tensor) -> None:
        if ids.ndim != 2:
            raise UserInputError(f"keyword ids must be (B, L), got shape {tuple(ids.shape)}")
        if ids.dtype not in (torch.int64, torch.int32):
            raise UserInputError(f"keyword ids must be integers, got {ids.dtype}")
        if ids.numel() == 0:
            return
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.cfg.vocab_size:
            bad = lo if lo < 0 else hi
            raise UserInputError(
                f"keyword id {bad} is outside 0..{self.cfg.vocab_size - 1} (text.vocab_size="
                f"{self.cfg.vocab_size}): do vocab.json and the text encoder's config match?"
            )

    @staticmethod
    def keyword_dropout(ids: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
        """See the module-level ``keyword_dropout``."""
        return keyword_dropout(ids, p, generator)


def keyword_dropout(ids: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Training-time dropout for CFG: each keyword becomes padding with probability ``p``, and each whole
    prompt with probability ``p`` (then the encoder gives the null condition). ids (B, L) -> new ids (B, L);
    the input is not modified. Draws from ``generator`` (on its device) so a seed gives the same drops.
    """
    if not 0 <= p <= 1:
        raise UserInputError(f"keyword dropout p must be in [0, 1], got {p}")
    if p == 0:
        return ids.clone()
    drop_word = uniform(ids.shape, generator, ids.device) < p  # (B, L)
    drop_all = uniform((ids.shape[0], 1), generator, ids.device) < p  # (B, 1)
    return ids.masked_fill(drop_word | drop_all, KeywordEncoder.PAD_ID)
