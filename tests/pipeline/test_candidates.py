"""``candidates``: several renders a clip, the keywords at full strength, kept where the drum judge hears the class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sampleforge.cli import main
from sampleforge.errors import ParamError
from sampleforge.eval.classifier import DrumClassifier, embed_and_classify, save_classifier
from sampleforge.params import GenerationParams
from sampleforge.pipeline import Generator, candidate_seed
from tests.judges import judge

FAST = {"steps": 2, "seed": 40, "n": 6}
REACH = {"snare": {"808": 0.25}}  # the model gives '808' a quarter of its strength in a snare


@pytest.fixture(scope="module")
def model(listening_model: Path) -> Path:
    return listening_model


def generator(model: Path, clf: DrumClassifier) -> Generator:
    gen = Generator.from_pretrained(model, device="cpu")
    gen._judges = (clf,)
    return gen


def test_a_clip_the_judge_hears_as_its_class_at_once_is_the_models_own(model: Path) -> None:
    gen = generator(model, judge("kick"))
    plain = gen.generate_full("kick", **FAST)
    r = gen.generate_full("kick", candidates=4, **FAST)
    assert plain.candidates is None and r.candidates == [0] * 6
    assert torch.equal(r.audio, plain.audio) and r.seeds == plain.seeds and r.params.candidates == 4


def test_a_held_back_keyword_is_given_whole_where_the_judge_keeps_the_class(model: Path) -> None:
    snare = generator(model, judge("snare"))
    with snare.with_timbre(keyword_reach=REACH):
        held = snare.generate_full("808 snare", **FAST)  # '808' at a quarter
        kept = snare.generate_full("808 snare", candidates=3, **FAST)
    with snare.with_timbre(keyword_reach={}):
        whole = snare.generate_full("808 snare", **FAST)
    assert kept.candidates == [0] * 6 and torch.equal(kept.audio, whole.audio)
    assert not torch.allclose(kept.audio, held.audio)
    # a judge that never hears a snare: every clip is the model's own, '808' held back, and it says so
    kick = generator(model, judge("kick"))
    with kick.with_timbre(keyword_reach=REACH):
        missed = kick.generate_full("808 snare", candidates=3, **FAST)
    assert missed.candidates == [None] * 6 and torch.allclose(missed.audio, held.audio, atol=1e-5)
    assert "candidates: for 6 of 6 clips of '808 snare' none of 3 candidates" in " ".join(missed.warnings)


def test_later_candidates_are_kept_only_when_heard_as_the_class_and_reproduce(model: Path) -> None:
    clf = judge(seed=3)
    gen = generator(model, clf)
    settings = {**FAST, "n": 12}
    r = gen.generate_full("snare", candidates=5, **settings)
    again = gen.generate_full("snare", candidates=5, **settings)
    plain = gen.generate_full("snare", **settings)
    assert torch.equal(r.audio, again.audio) and r.candidates == again.candidates
    assert r.candidates is not None and {None, 0} != set(r.candidates)  # this judge keeps later ones too
    _, probs = embed_and_classify(clf, r.audio)
    heard = [clf.cfg.classes[int(k)] for k in probs.argmax(1)]
    for k, j in enumerate(r.candidates):
        if j is None or j == 0:  # none kept, or the first: the model's own clip
            assert torch.allclose(r.audio[k], plain.audio[k], atol=1e-5)
        else:
            assert heard[k] == "snare" and not torch.allclose(r.audio[k], plain.audio[k])
            alone = gen.generate_full("snare", steps=2, seed=candidate_seed(r.seeds[k], j), n=1)
            assert torch.allclose(r.audio[k], alone.audio[0], atol=1e-4)  # candidate j: that seed's clip


def test_later_candidates_step_from_full_strength_toward_the_models_own(model: Path) -> None:
    """Candidate j of K gives a held-back keyword w + (1 - w)(1 - j/K) of its strength: the first is the keyword
    whole, each next one a step closer to the model's own blend (w)."""
    class HearsLate(DrumClassifier):
        """Hears every clip of the first two batches it judges as a kick, and every later one as a snare."""

        def embed(self, logmel: torch.Tensor) -> torch.Tensor:
            self.calls = getattr(self, "calls", 0) + 1
            self.head.bias.copy_(torch.tensor([50.0 if c == ("kick" if self.calls <= 2 else "snare")
                                               else 0.0 for c in self.cfg.classes]))
            return super().embed(logmel)

    late = HearsLate(judge().cfg).eval().requires_grad_(False)
    late.load_state_dict(judge().state_dict())
    with torch.no_grad():
        late.head.weight.zero_()
    gen = generator(model, late)
    with gen.with_timbre(keyword_reach=REACH):
        r = gen.generate_full("808 snare", candidates=4, **FAST)
    assert r.candidates == [2] * 6  # the third round: '808' at 0.25 + 0.75 x (1 - 2/4)
    with gen.with_timbre(keyword_reach={"snare": {"808": 0.625}}):
        alone = gen.generate_full("808 snare", steps=2, seed=candidate_seed(r.seeds[3], 2), n=1)
    assert torch.allclose(r.audio[3], alone.audio[0], atol=1e-4)
    with gen.with_timbre(keyword_reach={}):
        whole = gen.generate_full("808 snare", steps=2, seed=candidate_seed(r.seeds[3], 2), n=1)
    assert not torch.allclose(r.audio[3], whole.audio[0], atol=1e-3)  # not the keyword whole


def test_a_held_back_keywords_candidates_are_heard_first_by_a_quick_griffin_lim(model: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the model holds back a keyword, each round judges its clips first by a quick Griffin-Lim; only those
    heard as their class there are vocoded and judged again, and a clip is kept only when both hear it. A prompt
    with nothing held back goes straight to the vocoder."""
    gen = generator(model, judge("snare"))
    sounded, heard = [], iter([
        [True, True, True, False, False, False],  # round 0, quick: three pass
        [True, False, False],  # round 0, vocoded: one of them holds
        [True, False, True, True, True],  # round 1, quick
        [True, True, True, False],  # round 1, vocoded
    ])
    real_sounded = gen.sounded

    def sounding(latents: torch.Tensor, mels: torch.Tensor, samples: int, **kw: object):
        sounded.append((latents.shape[0], kw.get("griffin_lim") is not None))
        return real_sounded(latents, mels, samples, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(gen, "sounded", sounding)
    monkeypatch.setattr(gen, "_heard", lambda audio, wants: next(heard))
    with gen.with_timbre(keyword_reach=REACH):
        r = gen.generate_full("808 snare", candidates=2, **FAST)
    assert r.candidates == [0, 1, None, 1, 1, None]
    assert sounded[:4] == [(6, True), (3, False), (5, True), (4, False)]  # then the own clips, rendered whole
    again = generator(model, judge("snare"))
    with again.with_timbre(keyword_reach={"snare": {"808": 0.625}}):  # candidate 1 of 2: half way to the blend
        one = again.generate_full("808 snare", steps=2, seed=candidate_seed(r.seeds[1], 1), n=1)
    with again.with_timbre(keyword_reach=REACH):
        own = again.generate_full("808 snare", steps=2, seed=r.seeds[2], n=1)
    assert torch.allclose(r.audio[1], one.audio[0], atol=1e-4) and torch.allclose(r.audio[2], own.audio[0], atol=1e-4)
    sounded.clear()
    heard = iter([[True] * 6])
    assert gen.generate_full("snare", candidates=2, **FAST).candidates == [0] * 6
    assert sounded == [(6, False)]


def test_progress_counts_every_round_and_ends_at_its_total(model: Path) -> None:
    """One count over the rounds there may be (4 candidates, then the model's own clips: 5 x 2 steps), rising, and
    done when the clips are, however many rounds ran."""
    for hears, rounds_run in (("snare", 1), ("kick", 5)):
        gen = generator(model, judge(hears))
        calls: list[tuple[int, int]] = []
        with gen.with_timbre(keyword_reach=REACH):
            gen.generate_full("808 snare", candidates=4, callback=lambda i, n: calls.append((i, n)), **FAST)  # noqa: B023 (called at once)
        assert {n for _, n in calls} == {10} and calls[-1] == (10, 10), calls
        done = [i for i, _ in calls]
        assert done == sorted(done) and len(calls) == 2 * rounds_run + (rounds_run < 5), calls
    plain: list[tuple[int, int]] = []
    generator(model, judge("kick")).generate_full("808", candidates=4, callback=lambda i, n: plain.append((i, n)),
                                                  **FAST)
    assert plain == [(1, 2), (2, 2)]  # a prompt that is not judged: one render, its own steps


def test_a_candidate_is_kept_only_when_every_judge_hears_the_class(model: Path) -> None:
    both = generator(model, judge("kick"))
    both._judges = (judge("kick"), judge("kick", seed=1))
    assert both.generate_full("kick", candidates=2, **FAST).candidates == [0] * 6
    split = generator(model, judge("kick"))
    split._judges = (judge("kick"), judge("tom"))  # the second judge hears a tom in every clip
    r = split.generate_full("kick", candidates=2, **FAST)
    assert r.candidates == [None] * 6 and any("by the drum judges" in w for w in r.warnings)


def test_a_prompt_naming_no_class_is_not_judged(model: Path) -> None:
    gen = generator(model, judge("kick"))
    plain = gen.generate_full("808", **FAST)
    r = gen.generate_full("808", candidates=4, **FAST)
    assert torch.equal(r.audio, plain.audio) and r.candidates == [None] * 6
    assert any("names no drum class the judges know" in w for w in r.warnings)


def test_other_models_refuse_candidates() -> None:
    from sampleforge.backends.base import ParamSpace, resolve_in

    space = ParamSpace(samplers=("ddim",), min_duration=1.0, max_duration=2.0, default_duration=1.0, default_steps=2,
                       default_cfg=1.0)
    with pytest.raises(ParamError, match="candidates: this model does not take it"):
        resolve_in(space, GenerationParams(candidates=2), "fp32")
    with pytest.raises(ParamError, match="candidates"):
        GenerationParams(candidates=9)


def test_the_cli_records_the_candidate_kept(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import sampleforge.pipeline as pipeline
    from sampleforge.audio.io import read_metadata

    folder = save_classifier(judge("kick"), tmp_path / "judge", "# hears kicks\n")
    monkeypatch.setattr(pipeline, "JUDGES", (str(folder),))
    out = tmp_path / "k.wav"
    assert main(["generate", "kick", "--model", str(model), "--steps", "2", "--candidates", "3", "--output",
                 str(out), "--quiet"]) == 0
    meta = read_metadata(out)
    assert meta["candidates"] == "3" and meta["candidate"] == "0"
    import sampleforge

    api_file = sampleforge.generate(model=str(model), prompt="kick", ddim_steps=2, candidates=3,
                                    output_path=tmp_path / "api.wav", seed=int(meta["seed"]))
    assert read_metadata(api_file)["candidate"] == "0"  # the Python API records it as the CLI does
    assert main(["generate", "kick", "--model", str(model), "--candidates", "9", "--quiet"]) == 2
    assert "--candidates" in capsys.readouterr().err


def test_variations_and_morphs_are_not_judged(model: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from sampleforge.pipeline import MorphEnd

    gen = generator(model, judge("kick"))
    clip = np.sin(np.linspace(0, 400, 22050)).astype(np.float32)
    with pytest.raises(ParamError, match="candidates: variations are not judged"):
        gen.vary(clip, prompt="kick", steps=2, candidates=2)
    with pytest.raises(ParamError, match="candidates: morphs are not judged"):
        gen.morph(MorphEnd("kick"), MorphEnd("snare"), steps=2, candidates=2)
    assert main(["vary", str(tmp_path / "x.wav"), "--model", str(model), "--candidates", "2"]) == 2
    assert "unrecognized arguments: --candidates" in capsys.readouterr().err


KIT = {"prompt": "808", "pieces": "kick,snare", "seed": 3, "round_robins": 2, "velocity_layers": 2, "steps": 2}


def test_a_kit_pad_keeps_a_candidate_its_layers_are_all_heard_as(model: Path, tmp_path: Path) -> None:
    """A kit judges its pads: every velocity layer of a pad's round robin keeps the same candidate (they share a
    noise), and only where the judges hear all of them as the piece."""
    import numpy as np

    from sampleforge.kit.build import build_kit

    kicks = generator(model, judge("kick"))
    plain = build_kit(kicks, **KIT)
    kit = build_kit(kicks, candidates=3, **KIT)
    assert [s.candidate for s in kit.samples] == [0] * 4 + [None] * 4  # the kick pads keep their first
    assert [s["candidate"] for s in kit.provenance()["samples"]][3:5] == [0, None]
    assert "candidate" not in plain.provenance()["samples"][0]  # a kit not judged says nothing of it
    assert kit.params["candidates"] == 3
    assert [w for w in kit.warnings if w.startswith("candidates:")] == [
        f"candidates: for 2 of 2 clips of 'snare {v} 808' none of 3 candidates was heard as its class by the drum "
        "judges; those are the model's own clips" for v in ("soft", "hard")]
    for a, b in zip(plain.samples, kit.samples, strict=True):
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-5)  # nothing held back: the first is the pad's own

    class EveryOther(torch.nn.Module):  # hears rows 0, 2, ... of a batch as snares and 1, 3, ... as kicks
        def forward(self, e: torch.Tensor) -> torch.Tensor:
            out = torch.zeros(e.shape[0], len(classes))
            for row in range(e.shape[0]):
                out[row, classes.index("kick" if row % 2 else "snare")] = 50.0
            return out

    split = judge()
    classes = list(split.cfg.classes)
    split.head = EveryOther()
    # each pad has a layer heard as the other class in every round: no pad keeps one, though half the clips would
    assert [s.candidate for s in build_kit(generator(model, split), candidates=3, **KIT).samples] == [None] * 8
    assert main(["kit", "--model", str(model), "--pieces", "kick", "--steps", "2", "--candidates", "2",
                 "--out-dir", str(tmp_path / "k")]) == 0
    (sample,) = json.loads((tmp_path / "k" / "kit.json").read_text())["samples"]
    assert sample["candidate"] in (0, 1, None)
