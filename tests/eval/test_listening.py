"""`eval vocoder`'s page: the clips it shows (from each class in turn, cut alike), the blind listening test
(a drawn order, balanced, the same for a seed) and, in headless Chromium, that Reveal names A and B and counts
the answers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from sampleforge.eval.evaluate import _over_classes, trim_together
from sampleforge.eval.report import listening_test, vocoder_html
from tests.serve.test_browser import browser, wait_for  # noqa: F401 (the browser fixture)

SR = 8000


def _decay(seconds: float, n: int = 2 * SR) -> np.ndarray:
    t = np.arange(n) / SR
    return (np.sin(2 * np.pi * 300 * t) * np.exp(-t / (seconds / 6.9))).astype(np.float32)  # -60 dB at `seconds`


def _examples(k: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    return [(f"clip{i}.wav", _decay(0.3), 0.9 * _decay(0.3), 0.8 * _decay(0.3)) for i in range(k)]


def _result(with_vocoder: bool = True) -> dict:
    row = {"mrstft": 0.5, "logmel_l1": 0.05, "mr_logmel_l1": 0.1, "tail_flatness": 0.2, "hop_flutter_db": -1.0,
           "hf_peakiness_db": 4.0}
    return {"model_id": "m@1", "clips": 4, "split": "reference = all clips found", "griffin_lim_iters": 24,
            "griffin_lim_mel_iters": 6, "griffin_lim_init": "onset", "real": row, "griffin_lim": row,
            "vocoder": row if with_vocoder else None, "vocoder_description": "a network" if with_vocoder else None,
            "per_class": {"kick": {"clips": 4, "griffin_lim": row, "vocoder": row if with_vocoder else None}}}


def test_examples_come_from_each_class_in_turn():
    cats = ["kick", "kick", "snare", "hat", "kick", "snare"]
    assert _over_classes(cats, 4) == [0, 2, 3, 1]
    assert _over_classes(cats, 10) == [0, 2, 3, 1, 5, 4]  # all of them, no more
    assert _over_classes(cats, 0) == [] and _over_classes([], 3) == []


def test_clips_are_cut_alike_after_the_last_to_fall_silent():
    short, long_ = _decay(0.2), _decay(0.9)
    a, b, c = trim_together(short, long_, short.copy(), sample_rate=SR)
    assert len(a) == len(b) == len(c)
    assert 0.89 * SR + 0.05 * SR < len(a) <= 0.91 * SR + 0.05 * SR  # the longer one's -60 dB point, plus 50 ms
    assert np.array_equal(b, long_[: len(b)])  # cut, not changed
    (quiet,) = trim_together(np.zeros(2 * SR, np.float32), sample_rate=SR)
    assert len(quiet) == int(0.25 * SR)  # silence keeps the shortest length
    (whole,) = trim_together(_decay(5.0), sample_rate=SR)
    assert len(whole) == 2 * SR  # never longer than the clip


def test_the_listening_order_is_drawn_balanced_and_seeded():
    def orders(seed: int) -> list[tuple[str, str]]:
        return re.findall(r'data-a="([a-z-]+)" data-b="([a-z-]+)"', listening_test(_examples(8), SR, seed))

    first = orders(0)
    assert len(first) == 8 and all(set(pair) == {"vocoder", "griffin-lim"} for pair in first)
    assert sum(a == "vocoder" for a, _ in first) == 4  # half the rows play the vocoder as A
    assert orders(0) == first and any(orders(s) != first for s in (1, 2, 3))
    page = listening_test(_examples(3), SR)
    assert page.count("<audio") == 9 and page.count('type="radio"') == 9
    assert len(set(re.findall(r'name="(t\d+)"', page))) == 3  # one choice per row


def test_the_page_without_a_vocoder_has_no_test():
    page = vocoder_html(_result(with_vocoder=False), _examples(2), SR)
    assert "Listening test" not in page and "Vocoder check (4 real clips" in page
    assert page.count("<audio") == 4  # original and Griffin-Lim, labelled
    page = vocoder_html(_result(), _examples(2), SR)
    assert "Listening test (2 clips, blind)" in page and page.count("<audio") == 2 * 3  # played once, in the test
    assert "this names A and B" in page and "<details>" in page and page.count("<img") == 2 * 3


@pytest.mark.browser
def test_reveal_names_a_and_b_and_counts_the_answers(browser, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    html = vocoder_html(_result(), _examples(4), SR, seed=5)
    page = tmp_path / "vocoder.html"
    page.write_text(html, encoding="utf-8")
    browser.get(page.as_uri())
    rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.trial"), 10, "the trial rows")
    answers = [r.find_element(By.CSS_SELECTOR, ".answer") for r in rows]
    assert not any(a.is_displayed() for a in answers)  # hidden until Reveal
    vocoder_is = [r.get_attribute("data-a") == "vocoder" for r in rows]
    # the vocoder picked on the first two rows, Griffin-Lim on the third, no difference on the fourth
    picks = ["a" if vocoder_is[0] else "b", "a" if vocoder_is[1] else "b", "b" if vocoder_is[2] else "a", "same"]
    for row, pick in zip(rows, picks, strict=True):
        row.find_element(By.CSS_SELECTOR, f'input[value="{pick}"]').click()
    browser.find_element(By.XPATH, "//button[text()='Reveal']").click()
    tally = wait_for(lambda: browser.find_element(By.ID, "tally").text, 5, "the tally")
    assert tally == ("4 of 4 answered: the vocoder closer to the original 2, Griffin-Lim closer 1, "
                     "no difference 1.")
    assert all(a.is_displayed() for a in answers)
    assert answers[0].text in ("A: the vocoder, B: Griffin-Lim", "A: Griffin-Lim, B: the vocoder")
