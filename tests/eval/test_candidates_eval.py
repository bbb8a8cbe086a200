"""``sampleforge eval candidates``: the blend against candidates on held-back keywords, by every judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sampleforge.cli import main
from sampleforge.eval.candidates import held_back, keyword_kept, measure_candidates, parse_entries
from sampleforge.pipeline import Generator
from tests.judges import judge

REACH = {"snare": {"808": 0.25, "909": None, "noise": 1.0}, "clap": {"808": 0.5}}
RUN = {"n": 8, "candidates": 3, "steps": 2, "seed": 5}


@pytest.fixture
def held(listening_model: Path) -> Generator:
    gen = Generator.from_pretrained(listening_model, device="cpu")
    gen.bundle.timbre = {**gen.bundle.timbre, "keyword_reach": REACH}
    return gen


def test_the_entries_are_the_keywords_the_model_holds_back(held: Generator) -> None:
    assert held_back(held) == [("snare", "808"), ("clap", "808")]  # None and 1 hold nothing back
    assert held_back(held, ["clap"]) == [("clap", "808")]
    assert parse_entries(["snare:808", "closed_hat: jazz"]) == [("snare", "808"), ("closed_hat", "jazz")]


def test_a_judge_that_hears_the_class_keeps_the_keyword_whole(held: Generator) -> None:
    held._judges = (judge("snare"),)
    r = measure_candidates(held, [("snare", "808")], {"hears-snares": judge("snare")}, **RUN)
    (row,) = r["entries"]
    assert row["blend"]["judged"] == {"hears-snares": 1.0} and row["full"]["keyword_kept"] == pytest.approx(1.0)
    assert row["kept_at"] == [8, 0, 0, 0]  # every clip keeps its first candidate: the keyword at full strength
    assert row["candidates"]["keyword_kept"] == pytest.approx(1.0)
    assert row["blend"]["keyword_kept"] < 0.9  # '808' at a quarter of its strength
    assert r["means"]["candidates"]["keyword_kept_mean"] == pytest.approx(1.0, abs=1e-3)


def test_where_no_candidate_is_heard_as_the_class_the_clips_are_the_blends(held: Generator) -> None:
    held._judges = (judge("kick"),)
    r = measure_candidates(held, [("snare", "808")], {"a": judge("kick"), "b": judge("snare")}, **RUN)
    (row,) = r["entries"]
    assert row["kept_at"] == [0, 0, 0, 8]
    assert row["candidates"] == row["blend"] and row["blend"]["judged"] == {"a": 0.0, "b": 1.0}
    assert r["judges"] == ["a", "b"]


def test_keyword_kept_is_the_projection_on_the_full_keywords_move() -> None:
    base, full = torch.zeros(4, 2).numpy(), torch.tensor([[2.0, 0.0]] * 4).numpy()
    halfway = torch.tensor([[1.0, 5.0]] * 4).numpy()  # the orthogonal part does not count
    assert keyword_kept(halfway, base, full) == pytest.approx(0.5)
    assert keyword_kept(base, base, full) == pytest.approx(0.0)


def test_the_cli_measures_and_refuses_bad_entries(debug_model: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "candidates", "--model", str(debug_model), "--entries", "snare808"]) == 2
    assert "--entries: 'snare808' is not CLASS:WORD" in capsys.readouterr().err
    assert main(["eval", "candidates", "--model", str(debug_model)]) == 2  # the debug model holds nothing back
    assert "holds back no keyword" in capsys.readouterr().err
    out = tmp_path / "c.json"
    assert main(["eval", "candidates", "--model", str(debug_model), "--entries", "snare:808", "-n", "8",
                 "--candidates", "2", "--steps", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["judges"] == ["classifier-v2", "classifier-v1"] and result["candidates"] == 2
    (row,) = result["entries"]
    assert sum(row["kept_at"]) == 8 and row["prompt"] == "808 snare"
    assert "mean candidates" in capsys.readouterr().out
