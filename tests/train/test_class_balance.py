"""train/diffusion.py class_repeats: rare classes weigh more, by a capped power of the count ratio."""

from __future__ import annotations

from sampleforge.train.diffusion import class_repeats


def test_no_balance_repeats_nothing() -> None:
    cats = ["snare"] * 90 + ["clap"] * 15
    assert class_repeats(cats, 0.0) == [1] * 105


def test_rare_classes_are_repeated_by_the_power_of_the_ratio_and_capped() -> None:
    cats = ["snare"] * 80 + ["kick"] * 40 + ["clap"] * 10 + ["cowbell"] * 1
    # class counts 80, 40, 10, 1 → median 25
    rep = dict(zip(cats, class_repeats(cats, 0.5), strict=True))
    assert rep == {"snare": 1, "kick": 1, "clap": 2, "cowbell": 4}  # sqrt(2.5)=1.58→2, sqrt(25)=5→cap 4
    rep_full = dict(zip(cats, class_repeats(cats, 1.0, cap=100), strict=True))
    assert rep_full == {"snare": 1, "kick": 1, "clap": 2, "cowbell": 25}  # never below 1 for common classes


def test_the_latent_cache_key_follows_the_scale_factor() -> None:
    """Cached latents are scaled: a run whose config had another scale factor must not reuse them."""
    from sampleforge.train.diffusion import latent_cache_key

    args = (b"vae bytes", [("a.wav", "kick", ["kick"])], (8, True, 2.0, 0))
    assert latent_cache_key(*args, 0.5275) == latent_cache_key(*args, 0.5275)
    assert latent_cache_key(*args, 0.5275) != latent_cache_key(*args, 1.0)
    assert latent_cache_key(b"other vae", *args[1:], 0.5275) != latent_cache_key(*args, 0.5275)
