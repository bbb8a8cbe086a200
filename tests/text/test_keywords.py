"""Keyword normalisation, aliases, plurals, the vocabulary and its JSON file."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sampleforge.errors import UserInputError
from sampleforge.text.keywords import Vocabulary, category_of, tokenize


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Punchy 808 Kicks, hi-hat", ["punchy", "808", "kick", "hat"]),
        ("Kick_808_03.wav", ["kick", "808"]),
        ("BD 808", ["kick", "808"]),
        ("bassdrum", ["kick"]),
        ("kickdrum", ["kick"]),
        ("bass drum", ["kick"]),
        ("bass drums", ["kick"]),
        ("sd", ["snare"]),
        ("snaredrum", ["snare"]),
        ("hh", ["hat"]),
        ("hihat", ["hat"]),
        ("hi-hat", ["hat"]),
        ("hi hat", ["hat"]),
        ("hihats", ["hat"]),
        ("HiHat_Closed", ["hat", "closed"]),
        ("chh", ["closed", "hat"]),
        ("closedhat", ["closed", "hat"]),
        ("ohh", ["open", "hat"]),
        ("OpenHat", ["open", "hat"]),
        ("cp", ["clap"]),
        ("handclap", ["clap"]),
        ("rimshot", ["rim"]),
        ("side stick", ["rim"]),
        ("sidestick", ["rim"]),
        ("stick", ["rim"]),
        ("cb", ["cowbell"]),
        ("cy", ["cymbal"]),
        ("cymbals", ["cymbal"]),
        ("kicks hats toms claps", ["kick", "hat", "tom", "clap"]),
        ("crashes", ["crash"]),
        ("808s", ["808"]),
        ("bass glass brass", ["bass", "glass", "brass"]),
        ("808 bass", ["808", "bass"]),
        ("a kick with the drum sample, one shot", ["kick"]),
        ("snare_01 v7 003", ["snare"]),
        ("909/snare", ["909", "snare"]),
        ("kick808", ["kick", "808"]),
        ("Kick Drum KICK", ["kick"]),
        ("", []),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdehiklnoprstxyz0189 _-/,'ABCHKS", max_size=40))
def test_tokenize_is_idempotent(text: str) -> None:
    once = tokenize(text)
    assert tokenize(" ".join(once)) == once
    assert len(set(once)) == len(once)


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("punchy 808 bd", "kick"),
        ("open hh", "open_hat"),
        ("hats", "closed_hat"),
        ("deep", None),
        ("cb", "cowbell"),
        ("tambourine", "shaker"),  # an instrument name says its class, as it does for a kit's files
        ("bright splash", "crash"),
        ("conga", "perc"),
        ("agogo", "cowbell"),
        ("bell", "cowbell"),
        ("zildjian bell", "ride"),
        ("conga kick", "kick"),  # a class named wins
        ("cymbal", "crash"),
    ],
)
def test_category_of(prompt: str, category: str | None) -> None:
    assert category_of(prompt) == category


def _vocab() -> Vocabulary:
    return Vocabulary.build(
        [["kick", "808"], "snare_01.wav", ["Kicks", "punchy"], "BD hard", "kick kick rare"], min_count=1
    )


def test_vocabulary_order_counts_and_ids() -> None:
    v = _vocab()
    # kick appears in 4 clips (counted once per clip); the rest once, alphabetical
    assert v.counts == {"kick": 4, "808": 1, "hard": 1, "punchy": 1, "rare": 1, "snare": 1}
    assert v.words == ["kick", "808", "hard", "punchy", "rare", "snare"]
    assert len(v) == 7 and v.id_of("kick") == 1 and "snare" in v and "hat" not in v


def test_vocabulary_min_count() -> None:
    v = Vocabulary.build([["kick", "808"], ["kick"], ["snare", "808"], ["odd"]], min_count=2)
    assert v.words == ["808", "kick"]
    _, dropped = v.encode("odd kick")
    assert dropped == ["odd"]


def test_encode_reports_unknown_words_and_overflow() -> None:
    v = _vocab()
    ids, dropped = v.encode("punchy xyzzy Kicks", max_tokens=4)
    assert ids == [v.id_of("punchy"), v.id_of("kick"), 0, 0]
    assert dropped == ["xyzzy"]
    ids, dropped = v.encode("kick 808 hard punchy", max_tokens=2)
    assert ids == [1, 2] and dropped == ["hard", "punchy"]
    assert v.partition("zz kick 808 hard", max_tokens=2) == (["kick", "808"], ["zz"], ["hard"])
    assert v.decode(ids) == ["kick", "808"]
    with pytest.raises(UserInputError):
        v.encode("kick", max_tokens=0)


def test_encode_batch() -> None:
    v = _vocab()
    ids, dropped = v.encode_batch(["kick", "zzz snare 808", ""], max_tokens=3)
    assert ids.dtype == torch.long and ids.shape == (3, 3)
    assert ids.tolist() == [[1, 0, 0], [v.id_of("snare"), v.id_of("808"), 0], [0, 0, 0]]
    assert dropped == [[], ["zzz"], []]
    with pytest.raises(UserInputError):
        v.encode_batch("kick")  # type: ignore[arg-type]


def test_json_round_trip(tmp_path) -> None:
    v = _vocab()
    path = tmp_path / "vocab.json"
    v.save(path)
    data = json.loads(path.read_text())
    assert data["keywords"] == v.counts and data["min_count"] == 1
    w = Vocabulary.load(path)
    assert w == v and w.words == v.words and w.encode("punchy kick") == v.encode("punchy kick")


def test_bad_vocab_files(tmp_path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        Vocabulary.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserInputError, match="bad.json"):
        Vocabulary.load(bad)
    with pytest.raises(UserInputError, match="unknown key"):
        Vocabulary.from_dict({"keywords": {}, "extra": 1})
    with pytest.raises(UserInputError, match="not a normalised keyword"):
        Vocabulary({"Kicks": 3})
    with pytest.raises(UserInputError, match="invalid count"):
        Vocabulary({"kick": 0})


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("Lo-Fi kick", ["dark", "kick"]),
        ("reverb snare", ["long", "snare"]),
        ("gated snare", ["short", "snare"]),
        ("saturated 808", ["distorted", "808"]),
        ("bit crushed hats", ["distorted", "hat"]),
        ("huge kick", ["big", "kick"]),
        ("lo tom", ["low", "tom"]),  # "lo" alone is still low
    ],
)
def test_producers_words_read_as_the_knob_words_they_mean(prompt: str, words: list[str]) -> None:
    from sampleforge.text.keywords import keywords

    assert keywords(prompt) == words
