"""Prompt handling: synonyms at prompt time, "did you mean", no known word, two classes, thin descriptors."""

from __future__ import annotations

import pytest

from sampleforge.text.keywords import Vocabulary, classes_named, keywords


@pytest.fixture()
def vocab() -> Vocabulary:
    clips = [["kick", "808"]] * 5 + [["snare", "electro"]] * 4 + [["snare", "808"]] + [["kick"]] * 3
    cats = ["kick"] * 5 + ["snare"] * 5 + ["kick"] * 3
    return Vocabulary.build(clips, categories=cats)


def test_synonyms_apply_to_prompts_as_to_file_names(vocab: Vocabulary) -> None:
    assert keywords("Electronic Snare") == ["electro", "snare"]
    assert keywords("dirty kick") == ["distorted", "kick"]
    assert vocab.partition("electronic snare")[0] == ["electro", "snare"]
    assert vocab.prompt_warnings("electronic snare") == []


def test_near_misses_get_a_suggestion(vocab: Vocabulary) -> None:
    (w,) = vocab.prompt_warnings("kik")[:1]
    assert "'kik'" in w and "did you mean 'kick'" in w
    warnings = vocab.prompt_warnings("laser zap")
    assert any("unknown keyword 'laser'" in w and "did you mean" not in w for w in warnings)


def test_no_known_word_and_empty_prompts_warn(vocab: Vocabulary) -> None:
    for prompt in ("", "laser zap", "   "):
        assert any("random drum" in w for w in vocab.prompt_warnings(prompt)), prompt
    assert not any("random drum" in w for w in vocab.prompt_warnings("kick"))


def test_two_classes_warn_but_one_multiword_class_does_not(vocab: Vocabulary) -> None:
    assert classes_named(keywords("kick snare")) == ["kick", "snare"]
    assert classes_named(keywords("closed hat")) == ["closed_hat"]
    assert any("2 classes (kick, snare)" in w for w in vocab.prompt_warnings("kick snare"))
    assert vocab.prompt_warnings("closed hat") == [w for w in vocab.prompt_warnings("closed hat") if "classes" not in w]


def test_thin_descriptors_warn_per_class(vocab: Vocabulary) -> None:
    assert vocab.classes["808"] == {"kick": 5, "snare": 1}
    assert vocab.prompt_warnings("808 kick") == []
    (w,) = vocab.prompt_warnings("808 snare")
    assert "'808' is on only 1 snare clip" in w
    assert vocab.prompt_warnings("808 snare", measured={"808"}) == []  # a measured reach says more than a count


def test_thin_descriptors_name_the_class_in_words() -> None:
    vocab = Vocabulary.build([["closed", "hat", "808"]] + [["closed", "hat"]] * 3, categories=["closed_hat"] * 4)
    (w,) = vocab.prompt_warnings("808 closed hat")
    assert "'808' is on only 1 closed hat clip(s)" in w and "on a closed hat is weak" in w


def test_knob_words_are_known(vocab: Vocabulary) -> None:
    assert any("unknown keyword 'long'" in w for w in vocab.prompt_warnings("long kick"))
    assert vocab.prompt_warnings("long kick", knob_words={"long"}) == []
    assert not any("random drum" in w for w in vocab.prompt_warnings("long", knob_words={"long"}))


def test_per_class_counts_survive_save_and_load(vocab: Vocabulary, tmp_path) -> None:
    vocab.save(tmp_path / "vocab.json")
    back = Vocabulary.load(tmp_path / "vocab.json")
    assert back == vocab and back.classes["808"] == {"kick": 5, "snare": 1}
    legacy = Vocabulary.from_dict({"keywords": {"kick": 3}})
    assert legacy.classes == {} and "classes" not in legacy.to_dict()


def test_numbers_a_prompt_drops_are_said(vocab: Vocabulary) -> None:
    """`generate --seed 1 2 3 kick` makes "2 3 kick" the prompt: the numbers do nothing, and the user is told."""
    (w,) = vocab.prompt_warnings("2 3 kick")
    assert w.startswith("numbers '2 3' ignored") and "count" in w and "seed" in w
    (w,) = vocab.prompt_warnings("kick 07")
    assert w.startswith("number '07' ignored")
    assert vocab.prompt_warnings("808 kick") == []  # a number that names a sound is a keyword


def test_accents_are_folded_and_other_symbols_said(vocab: Vocabulary) -> None:
    assert keywords("Kïck") == ["kick"] and keywords("snäre") == ["snare"]
    assert vocab.prompt_warnings("kïck") == []
    (w,) = vocab.prompt_warnings("\U0001f941 kïck")
    assert w == "'\U0001f941' ignored: keywords are made of the letters a-z (accents are dropped) and digits"
    (w,) = vocab.prompt_warnings("\u30ad\u30c3\u30af \U0001f941 kick \U0001f941")
    assert w.startswith("'\u30ad\u30c3\u30af' and '\U0001f941' ignored: "), w  # each as typed, once


def test_a_prompt_without_a_class_says_the_model_picks_one(vocab: Vocabulary) -> None:
    """A bare '808' is no kick: the model chooses the class from the word's clips (drums-v2: shakers and hats)."""
    (w,) = vocab.prompt_warnings("808")
    assert w == "no drum class named: the model picks one by itself ('808 kick' names one)"
    for named in ("808 kick", "hat", "electro snare"):  # a class, a family word
        assert not any("no drum class" in w for w in vocab.prompt_warnings(named)), named
    assert not any("no drum class" in w for w in vocab.prompt_warnings("laser"))  # that is 'no keyword' already
