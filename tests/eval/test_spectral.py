"""The spectral-character measures on signals whose answer is known: tones vs noise, a hop-rate tremolo, partials."""

from __future__ import annotations

import numpy as np
import pytest

from sampleforge.eval import spectral

SR = 44100


def _decaying(x: np.ndarray, rate: float = 4.0) -> np.ndarray:
    t = np.arange(x.size) / SR
    return x * np.exp(-rate * t)


def _noise(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    return _decaying(np.random.default_rng(seed).standard_normal(int(seconds * SR)))


def test_tail_flatness_tells_noise_from_tones() -> None:
    t = np.arange(int(1.5 * SR)) / SR
    tones = _decaying(sum(np.sin(2 * np.pi * f * t) for f in (3000.0, 5500.0, 9000.0, 12500.0)))
    noise = spectral.tail_flatness(_noise())
    assert 0.4 < noise < 0.7  # white noise: exp(-euler_gamma) = 0.56 for a periodogram
    assert spectral.tail_flatness(tones) < 0.05
    assert np.isnan(spectral.tail_flatness(np.zeros(SR)))


def test_hop_flutter_finds_a_tremolo_at_the_hop_rate() -> None:
    x = _noise()
    t = np.arange(x.size) / SR
    tremolo = x * (1 + 0.5 * np.sin(2 * np.pi * SR / 512 * t))
    plain, wobbly = spectral.hop_flutter_db(x), spectral.hop_flutter_db(tremolo)
    assert plain < 4.0
    assert wobbly > plain + 10.0
    # a tremolo at another rate is not the hop rate's
    assert spectral.hop_flutter_db(x * (1 + 0.5 * np.sin(2 * np.pi * 130.0 * t))) < 4.0
    assert np.isnan(spectral.hop_flutter_db(_noise(0.1)[: int(0.1 * SR)] * 0))


def test_hf_peakiness_rises_with_partials() -> None:
    x = _noise()
    t = np.arange(x.size) / SR
    freqs = np.random.default_rng(1).uniform(5000.0, 16000.0, 40)  # a cymbal's dense inharmonic partials
    partials = x + _decaying(sum(0.3 * np.sin(2 * np.pi * f * t) for f in freqs))
    smooth, peaky = spectral.hf_peakiness_db(x), spectral.hf_peakiness_db(partials)
    assert smooth < 3.0 and peaky > smooth + 5.0


def test_spectral_character_means_over_measurable_clips() -> None:
    batch = np.stack([_noise(seed=0), _noise(seed=1), np.zeros(int(1.5 * SR))])
    out = spectral.spectral_character(batch, SR)
    assert set(out) == {"tail_flatness", "hop_flutter_db", "hf_peakiness_db"}
    assert out["tail_flatness"] == pytest.approx(
        np.mean([spectral.tail_flatness(batch[0]), spectral.tail_flatness(batch[1])]))
    assert spectral.spectral_character(np.zeros((1, SR)), SR)["tail_flatness"] is None
