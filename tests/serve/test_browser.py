"""The web page in headless Chromium (selenium): pick a class, Generate, play a clip, download clip and pack."""

from __future__ import annotations

import os
import re
import shutil
import time
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path: Path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium / chromedriver not installed (run `make apt-test`)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
    ):
        opts.add_argument(flag)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_script_timeout(30)
    driver.downloads = downloads  # type: ignore[attr-defined]
    yield driver
    driver.quit()


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except StaleElementReferenceException:  # the page redrew what was being read: look again
            value = None
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def wait_file(folder: Path, suffix: str) -> Path:
    def done():
        files = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        return files[0] if files and files[0].stat().st_size > 0 else None

    return wait_for(done, 30, f"a downloaded {suffix} in {folder}")


def test_page_generates_plays_and_downloads(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By

    server = live_server()
    browser.get(server.url + "/")
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#classes .chip"), 20, "class buttons from /v1/vocab"
    )
    labels = [b.text.lower() for b in browser.find_elements(By.CSS_SELECTOR, "#classes .chip")]
    assert {"kick", "snare", "closed hat", "open hat", "clap", "tom", "crash"} <= set(labels)
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#suggest .tag"), 10, "keyword suggestions")

    browser.find_element(By.XPATH, "//div[@id='classes']/button[normalize-space()='snare']").click()
    assert browser.find_element(By.ID, "prompt").get_attribute("value").strip() == "snare"
    browser.find_element(By.ID, "prompt").send_keys(" pun")  # suggestions follow the typed prefix
    wait_for(
        lambda: [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#suggest .tag")] == ["punchy"],
        10,
        "the 'punchy' suggestion",
    )
    browser.find_element(By.CSS_SELECTOR, "#suggest .tag").click()
    assert browser.find_element(By.ID, "prompt").get_attribute("value").split() == ["snare", "punchy"]
    browser.execute_script("""
        for (const [id, v] of [["count", 3], ["steps", 40]]) {
          const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event('input'));
        }
        document.getElementById('seed').value = 77;
        document.getElementById('candidates').value = '4';
        document.getElementById('decay-on').checked = true;
        const decay = document.getElementById('decay'); decay.value = 0.8; decay.dispatchEvent(new Event('input'));""")
    browser.find_element(By.ID, "generate").click()

    wait_for(
        lambda: len(browser.find_elements(By.CSS_SELECTOR, ".clip canvas[data-drawn='1']")) == 3,
        90,
        "three clips with drawn waveforms",
    )
    audios = browser.find_elements(By.CSS_SELECTOR, ".clip audio")
    assert len(audios) == 3
    state = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const a = document.querySelector('.clip audio');
        const report = () => done({ready: a.readyState, duration: a.duration, error: a.error && a.error.code,
                                   src: a.src, time: a.currentTime});
        a.play().then(() => setTimeout(report, 600), (e) => done({playError: String(e)}));""")
    assert state.get("playError") is None, state
    assert state["error"] is None and state["ready"] >= 2 and abs(state["duration"] - 2.0) < 0.05, state
    assert state["src"].startswith("blob:")
    meta = browser.find_element(By.CSS_SELECTOR, ".job-title .meta").text
    assert "seed 77" in meta and "40 steps" in meta
    assert "decay 0.80" in meta and "brightness" not in meta  # a ticked knob is sent, an unticked one is not
    assert "4 candidates" in meta
    kept = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".clip .seed")]
    assert all(re.fullmatch(r"seed \d+ · (candidate [0-3]|model's own)", t) for t in kept), kept

    browser.find_elements(By.CSS_SELECTOR, ".clip a.download")[1].click()
    wav = wait_file(browser.downloads, ".wav")
    assert (
        wav.name.startswith("snare_punchy_")
        and wav.name.endswith("_1.wav")
        and wav.read_bytes()[:4] == b"RIFF"
    )
    browser.find_element(By.CSS_SELECTOR, ".job .pack").click()
    pack = wait_file(browser.downloads, ".zip")
    with zipfile.ZipFile(pack) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".wav")]) == 3

    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("SAMPLEFORGE_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(shot, os.environ["SAMPLEFORGE_SCREENSHOT"])


def test_page_asks_for_the_token_and_cancels_a_job(browser, live_server):
    from selenium.webdriver.common.by import By

    server = live_server("--token", "pa55")
    browser.get(server.url + "/")
    bar = browser.find_element(By.ID, "token-bar")
    wait_for(bar.is_displayed, 20, "the token bar")
    browser.find_element(By.ID, "token").send_keys("pa55")
    browser.find_element(By.ID, "token-save").click()
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#classes .chip"), 20, "class buttons after the token"
    )
    assert not bar.is_displayed()


def test_the_token_entered_brings_back_all_the_page_and_a_wrong_one_is_said(browser, live_server):
    """After the token, the kit builder has its pads and the notices of the refused loads are gone (the pads stayed
    empty and "Build kit" did nothing); a stored token the server refuses is said as such."""
    from selenium.webdriver.common.by import By

    server = live_server("--token", "pa55")
    browser.get(server.url + "/")
    wait_for(lambda: "needs an access token" in browser.find_element(By.ID, "kit-notice").text, 20, "the kit's notice")
    assert not browser.find_elements(By.CSS_SELECTOR, "#pads .pad")
    browser.find_element(By.ID, "token").send_keys("pa55")
    browser.find_element(By.ID, "token-save").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#pads .pad")) == 11, 20, "the kit's pads")
    wait_for(lambda: not browser.find_element(By.ID, "notice").is_displayed(), 10, "the page's notice gone")
    assert not browser.find_element(By.ID, "kit-notice").is_displayed()
    browser.execute_script("localStorage.setItem('sampleforge.token', 'wrong');")
    browser.get(server.url + "/")
    wait_for(lambda: "refused this access token" in browser.find_element(By.ID, "notice").text, 20, "the refusal")


def test_the_page_follows_a_job_while_the_server_is_unreachable(browser, live_server):
    """A job the server accepted runs again after a restart; the page keeps asking for it (it gave up at the first
    failed fetch, "Failed to fetch"). Here the page's requests for the job fail five times, as during a restart."""
    from selenium.webdriver.common.by import By

    server = live_server()
    browser.get(server.url + "/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#classes .chip"), 20, "class buttons")
    browser.find_element(By.ID, "prompt").send_keys("kick")
    browser.execute_script("""
        for (const [id, v] of [["count", 1], ["steps", 2]]) {
          const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event('input'));
        }
        const real = window.fetch;
        window.failedFetches = 0; window.saidWaiting = false;
        window.fetch = (url, opts) => {
          if (String(url).includes('/v1/jobs/') && window.failedFetches < 5) {
            window.failedFetches += 1;
            return Promise.reject(new TypeError('Failed to fetch'));
          }
          return real(url, opts);
        };
        new MutationObserver(() => {
          if (/unreachable/.test(document.getElementById('progress-text').textContent)) window.saidWaiting = true;
        }).observe(document.getElementById('progress-text'), {childList: true, characterData: true, subtree: true});""")
    browser.find_element(By.ID, "generate").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".clip canvas[data-drawn='1']"), 90, "the clip")
    assert browser.execute_script("return window.failedFetches") == 5
    assert browser.execute_script("return window.saidWaiting") is True
    assert not browser.find_element(By.ID, "notice").is_displayed()


def test_the_status_says_why_the_server_is_not_ready(browser, live_server):
    """/v1/health's problems (here one stood in for a full disk), not "no worker available" for every reason."""
    from selenium.webdriver.common.by import By

    server = live_server()
    browser.get(server.url + "/")
    wait_for(lambda: browser.find_element(By.ID, "status-text").text == "ready", 20, "ready")
    browser.execute_script("""
        const real = window.fetch;
        window.fetch = (url, opts) => String(url).endsWith('/v1/health')
          ? Promise.resolve(new Response(JSON.stringify({ready: false, problems: ['result folder refuses writes'],
                                                         queue: {queued: 0, running: 0}}), {status: 503}))
          : real(url, opts);
        health();""")
    wait_for(lambda: browser.find_element(By.ID, "status-text").text == "not ready: result folder refuses writes",
             10, "the problem in the status")


def test_page_chooses_among_served_models(browser, live_server, debug_model, tmp_path):
    """With several models served (here the debug model and the same with Griffin-Lim, MODEL+VOCODER), the page
    lists them; a job made with the chosen one names it. With one model there is nothing to choose."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    server = live_server("--model", f"{debug_model}+griffin-lim")
    browser.get(server.url + "/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#model option"), 20, "the served models")
    assert browser.find_element(By.ID, "model-field").is_displayed()
    pick = Select(browser.find_element(By.ID, "model"))
    assert [o.text for o in pick.options] == ["debug", "debug+griffin-lim"]
    assert pick.first_selected_option.text == "debug"  # the server's default
    pick.select_by_visible_text("debug+griffin-lim")
    assert "debug+griffin-lim" in browser.find_element(By.ID, "model-name").text
    browser.find_element(By.ID, "prompt").send_keys("kick")
    browser.execute_script("""
        for (const [id, v] of [["count", 1], ["steps", 2]]) {
          const el = document.getElementById(id); el.value = v; el.dispatchEvent(new Event('input'));
        }""")
    browser.find_element(By.ID, "generate").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".clip canvas[data-drawn='1']"), 90, "the clip")
    assert browser.find_element(By.CSS_SELECTOR, ".job-title .meta").text.startswith("debug+griffin-lim · 2 steps")
    job_id = browser.find_element(By.CSS_SELECTOR, "article.job").get_attribute("data-job-id")
    assert server.client.get(f"/v1/jobs/{job_id}").json()["model"] == "debug+griffin-lim"

    single = live_server(storage=tmp_path / "single")
    browser.get(single.url + "/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#model option"), 20, "the served model")
    assert not browser.find_element(By.ID, "model-field").is_displayed()


def test_page_suggests_the_words_that_shape_the_sound(browser, live_server):
    """With a model of timbre knobs (the shipped drums-v2), the suggestions carry its knob words, each saying what
    it sets; a click adds the word to the prompt."""
    from selenium.webdriver.common.by import By

    from sampleforge.bundle import resolve_model

    try:
        model = resolve_model("drums-v2")
    except Exception:
        pytest.skip("the shipped drums-v2 model is not installed")
    from selenium.webdriver.support.ui import Select

    def suggested() -> list[list[str]]:
        """The suggestions shown, (word, title) each, read in one step: the page redraws them as it learns more."""
        return browser.execute_script(  # type: ignore[no-any-return]
            "return [...document.querySelectorAll('#suggest .tag')].map((t) => [t.textContent.trim(), t.title]);")

    server = live_server("--model", str(model))  # served beside the debug model, which has no knobs
    browser.get(server.url + "/")
    wait_for(suggested, 20, "suggestions")
    assert "long" not in [word for word, _ in suggested()]
    Select(browser.find_element(By.ID, "model")).select_by_index(1)

    def shown():
        tags = dict(suggested())
        return tags if "long" in tags else None

    tags = wait_for(shown, 20, "drums-v2's suggestions")
    assert tags["long"] == "sets decay 0.85" and any(t.endswith("training clips") for t in tags.values()), tags
    browser.find_element(By.XPATH, "//div[@id='classes']/button[normalize-space()='snare']").click()
    browser.find_element(By.ID, "prompt").send_keys(" bri")
    wait_for(lambda: [word for word, _ in suggested()] == ["bright"], 10, "the 'bright' suggestion")
    tag = browser.find_element(By.CSS_SELECTOR, "#suggest .tag")
    assert tag.get_attribute("title") == "sets brightness 0.85"
    tag.click()
    assert browser.find_element(By.ID, "prompt").get_attribute("value").split() == ["snare", "bright"]
