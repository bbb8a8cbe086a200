"""Keyword reach: a keyword that takes a class away by itself ("808 snare") is given part of its conditioning."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import torch

from sampleforge.pipeline import Generator
from sampleforge.text.keywords import Vocabulary, keywords
from sampleforge.timbre import KNOBS, keyword_weight, table_problem


def test_keyword_weight_holds_back_the_measured_keywords_of_the_class() -> None:
    table = {"snare": {"808": 0.25, "909": 0.75, "jazz": None, "rock": 1.0}}
    assert keyword_weight(["snare", "808"], "snare", table) == (["snare"], 0.25)
    assert keyword_weight(["snare", "909", "808", "soft"], "snare", table) == (["snare", "soft"], 0.25)  # the least
    assert keyword_weight(["snare", "909"], "snare", table) == (["snare"], 0.75)
    for words in (["snare"], ["snare", "jazz"], ["snare", "rock"]):  # None: leaves anyway; 1: all of it
        assert keyword_weight(words, "snare", table) is None
    assert keyword_weight(["kick", "808"], "kick", table) is None
    assert keyword_weight(["808"], None, table) is None and keyword_weight(["snare", "808"], "snare", None) is None


def test_the_keyword_reach_table_is_checked_at_load() -> None:
    assert table_problem({"keyword_reach": {"snare": {"808": 0.25, "jazz": None}}}) is None
    assert "keyword_reach.snare.808" in str(table_problem({"keyword_reach": {"snare": {"808": 1.5}}}))
    assert "one keyword" in str(table_problem({"keyword_reach": {"snare": {"808+brightness:high": 0.5}}}))
    assert "must map each class" in str(table_problem({"keyword_reach": {"snare": 0.5}}))


def _with_table(folder, tmp_path, table: dict):
    model = tmp_path / "m"
    shutil.copytree(folder, model)
    (model / "timbre.json").write_text(json.dumps({"keyword_reach": table}))
    return Generator.from_pretrained(model, device="cpu")


def test_generation_gives_a_held_keyword_part_of_its_conditioning(knob_model, tmp_path) -> None:
    plain = Generator.from_pretrained(knob_model, device="cpu")
    held = _with_table(knob_model, tmp_path, {"snare": {"808": 0.25}})

    def cond(gen: Generator, *prompts: str) -> torch.Tensor:
        return gen.condition(list(prompts))[0]

    full, without = cond(plain, "808 snare"), cond(plain, "snare")
    assert not torch.allclose(full, without)
    torch.testing.assert_close(cond(held, "808 snare"), without + 0.25 * (full - without))
    torch.testing.assert_close(cond(held, "long 808 snare"),  # its knobs stay those of the whole prompt
                               cond(plain, "long snare") + 0.25 * (cond(plain, "long 808 snare") - cond(plain, "long snare")))
    for prompt in ("808 kick", "909 snare", "snare", "808"):  # another class, another keyword, none, no class
        assert torch.equal(cond(held, prompt), cond(plain, prompt))
    batch = cond(held, "808 snare", "808 kick", "snare")  # each row as alone
    torch.testing.assert_close(batch, torch.cat([cond(held, "808 snare"), cond(held, "808 kick"), cond(held, "snare")]))
    with held.with_timbre(keyword_reach={"snare": {"808": 0.0}}):
        assert torch.equal(cond(held, "808 snare"), without)
    torch.testing.assert_close(cond(held, "808 snare"), without + 0.25 * (full - without))  # restored
    (warned,) = [w for w in held.check_prompt("808 snare") if "keyword-reach" in w]
    assert warned.startswith("'808' at full strength takes a snare out of its class") and "given at 25%" in warned
    assert warned.endswith(", unless the candidates setting finds a render nearer full strength that the drum judges "
                           "still hear as a snare")
    assert not any("keyword-reach" in w for w in held.check_prompt("808 kick") + plain.check_prompt("808 snare"))
    dropped = _with_table(knob_model, tmp_path / "dropped", {"snare": {"808": 0.0}})
    (warned,) = [w for w in dropped.check_prompt("808 snare") if "keyword-reach" in w]
    assert "; it is left out, unless the candidates setting" in warned


def test_a_measured_keyword_is_not_also_warned_of_by_its_clip_count(knob_model, tmp_path) -> None:
    thin = {w: {"kick": 10} for w in ("kick", "long", "short", "808", "909")} | {"snare": {"snare": 10}}
    thin["808"]["snare"] = 1
    counted = tmp_path / "counted"
    shutil.copytree(knob_model, counted)
    Vocabulary({w: 10 for w in thin}, classes=thin).save(counted / "vocab.json")
    plain = Generator.from_pretrained(counted, device="cpu")
    assert any("'808' is on only 1 snare clip" in w for w in plain.check_prompt("808 snare"))
    (warned,) = _with_table(counted, tmp_path, {"snare": {"808": 0.5}}).check_prompt("808 snare")
    assert "keyword-reach" in warned and "given at 50%, unless" in warned


class _Bundle(SimpleNamespace):
    keyword_reach = property(lambda self: dict(self.timbre.get("keyword_reach", {})))


class _KeywordModel:
    """A generator whose clips carry how strongly "808" reached the model, for a judge that decides by it."""

    knob_values = Generator.knob_values
    model_words = Generator.model_words
    with_timbre = Generator.with_timbre
    _one_class = staticmethod(Generator._one_class)

    def __init__(self, timbre: dict) -> None:
        counts = {"kick": 10, "snare": 10, "808": 5, "909": 3, "long": 4, "jazz": 2}
        self.bundle = _Bundle(config=SimpleNamespace(text=SimpleNamespace(knobs=list(KNOBS))), class_words={},
                              knob_limits={}, word_reach={}, pair_reach={}, timbre=timbre,
                              vocab=SimpleNamespace(classes={w: {"snare": c} for w, c in counts.items()}, counts=counts))
        self.calls: list[tuple[str, int]] = []

    def generate_full(self, prompt: str, n: int, seed: int, **kw):
        words = self.model_words(prompt).split()
        held = keyword_weight(words, self._one_class(keywords(prompt)), self.bundle.keyword_reach)
        strength = 0.0 if "808" not in words else held[1] if held else 1.0
        self.calls.append((prompt, seed))
        audio = torch.tensor([[seed, strength, float("jazz" in words)]] * n, dtype=torch.float64)
        return SimpleNamespace(audio=audio, params=SimpleNamespace(cfg_scale=3.0))


def test_keyword_reach_finds_the_weight_that_keeps_the_class(monkeypatch) -> None:
    """A keyword fails by the word reach's rule (surely under the class prompt on two blocks of seeds) and is tried
    with less of its conditioning; the first weight that holds is its reach. A keyword that holds gets none; a
    knob word that reaches the model through its knob only is not measured."""
    from sampleforge.eval import descriptors

    def judge(clf, wavs, category):
        seed, strength, jazz = wavs[0].tolist()
        if jazz and seed >= descriptors.REACH_SEEDS:
            return 0.5  # on the second block of seeds only: noise
        return 0.1 if strength > 0.5 else 1.0

    monkeypatch.setattr(descriptors, "_judged", judge)
    stored = {"keyword_reach": {"snare": {"808": 0.25}}}
    model = _KeywordModel(stored)
    result = descriptors.keyword_reach(model, "judge", n=48, classes=["snare"])
    assert model.bundle.timbre is stored  # the tables tried are gone
    words = result["judged"]["snare"]["words"]
    assert result["keyword_reach"] == {"snare": {"808": 0.5}}  # measured at full strength, not at the stored 0.25
    assert words["808"]["judged"] == 0.1 and words["808"]["tried"] == {"0.75": 0.1, "0.5": 1.0}
    assert set(words) == {"808", "909", "jazz"}  # "kick snare" names two classes; "long" acts through its knob
    assert "tried" not in words["909"] and "tried" not in words["jazz"]
    assert result["judged"]["snare"]["class_prompt"] == 1.0
    assert ("808 snare", descriptors.REACH_SEEDS) in model.calls
    only = descriptors.keyword_reach(_KeywordModel({}), "judge", n=48, classes=["snare"], words=["909"])
    assert set(only["judged"]["snare"]["words"]) == {"909"} and only["keyword_reach"] == {}


def test_keyword_reach_is_written_and_listed(knob_model, tmp_path, capsys) -> None:
    from sampleforge.cli import main

    model = tmp_path / "m"
    shutil.copytree(knob_model, model)
    (model / "timbre.json").write_text(json.dumps({"keyword_reach": {"kick": {"909": 0.5}, "snare": {"jazz": 0.25}}}))
    out = tmp_path / "kw.json"
    args = ["eval", "keyword-reach", "--model", str(model), "--classes", "snare", "-n", "8", "--steps", "1",
            "--words", "808", "909", "--write", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["judged"]["snare"]["words"]) == {"808", "909"}
    stored = json.loads((model / "timbre.json").read_text())["keyword_reach"]
    # the other class and the snare's keyword not measured are kept
    assert stored["kick"] == {"909": 0.5} and stored["snare"]["jazz"] == 0.25
    assert {k: v for k, v in stored["snare"].items() if k != "jazz"} == result["keyword_reach"].get("snare", {})
    assert "words keep the class" in printed and str(out) in printed
    capsys.readouterr()
    assert main(["vocab", "--model", str(model)]) == 0
    assert "  kick        909 0.5" in capsys.readouterr().out
