"""The kit builder, variations and the morph slider in headless Chromium against a live debug-model server."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.serve.test_browser import browser, wait_file, wait_for  # noqa: F401 (the browser fixture)

pytestmark = pytest.mark.browser

PADS = ("kick", "snare", "clap", "closed_hat", "open_hat", "low_tom", "mid_tom", "high_tom", "crash", "ride", "rim")


def pad_seeds(driver) -> dict[str, str]:
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#pads .pad')]"
        ".map((p) => [p.dataset.piece, p.dataset.padSeed || '']));")


def test_kit_builder_auditions_rerolls_and_downloads(browser, live_server) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    server = live_server()
    browser.get(server.url + "/")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#pads .pad")) == 11, 20, "eleven pads")
    assert [p.get_attribute("data-piece") for p in browser.find_elements(By.CSS_SELECTOR, "#pads .pad")] == list(PADS)
    browser.execute_script("const s = document.getElementById('steps'); s.value = 2; s.dispatchEvent(new Event('input'));"
                           "document.getElementById('candidates').value = '4';")  # the form's "Keep the class"
    browser.find_element(By.ID, "kit-prompt").send_keys("dusty 808")
    browser.find_element(By.ID, "kit-seed").send_keys("40")
    browser.find_element(By.ID, "kit-build").click()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#pads canvas[data-drawn='1']")) == 11, 120,
             "eleven drawn pads")
    seeds = pad_seeds(browser)
    assert seeds == {p: str(41 + k) for k, p in enumerate(PADS)}  # pad k: kit seed + 1 + k, as the CLI

    browser.find_element(By.CSS_SELECTOR, ".pad[data-piece='snare']").click()  # audition
    state = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const t0 = Date.now();
        const check = () => { const a = kit.lastPlayed;
          if (a.currentTime > 0 || a.ended || a.error || Date.now() - t0 > 10000)
            done({error: a.error && a.error.code, duration: a.duration, played: a.currentTime > 0 || a.ended});
          else setTimeout(check, 50); };
        check();""")
    assert state["error"] is None and 0 < state["duration"] <= 2.0 and state["played"], state

    browser.find_element(By.CSS_SELECTOR, ".pad[data-piece='snare'] .reroll").click()  # re-roll one pad
    wait_for(lambda: pad_seeds(browser)["snare"] != seeds["snare"], 60, "a re-rolled snare")
    after = pad_seeds(browser)
    assert {p: s for p, s in after.items() if p != "snare"} == {p: s for p, s in seeds.items() if p != "snare"}

    wait_for(lambda: browser.find_element(By.ID, "kit-download").is_enabled(), 30, "the download button")
    browser.find_element(By.ID, "kit-download").click()
    pack = wait_file(browser.downloads, ".zip")
    with zipfile.ZipFile(pack) as zf:
        names = zf.namelist()
        kit_json = zf.read("dusty_808/kit.json").decode()
    assert len([n for n in names if n.endswith(".wav")]) == 11
    assert {"dusty_808/kit.sfz", "dusty_808/drumkit.xml", "dusty_808/kit.dspreset", "dusty_808/gm_map.csv"} <= set(names)
    assert f'"seed": {after["snare"]}' in kit_json  # the zip holds the re-rolled pad
    assert json.loads(kit_json)["params"]["candidates"] == 4  # and was judged as the pads were


def test_dropped_sample_gives_variations_and_the_morph_slider_plays(browser, live_server, wait_job,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    import base64

    from selenium.webdriver.common.by import By

    server = live_server()
    sample = tmp_path / "my snare.wav"
    r = server.client.post("/v1/kit/pad", json={"piece": "snare", "seed": 1, "steps": 2, "format": "wav16"})
    pad = wait_job(server.client, r.json()["job_id"])
    sample.write_bytes(server.client.get(pad["results"][0]["url"]).content)
    browser.get(server.url + "/")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#classes .chip"), 20, "the page")
    browser.execute_script("const s = document.getElementById('steps'); s.value = 2; s.dispatchEvent(new Event('input'));")
    # a real drop: a File in a DataTransfer, dispatched on the drop zone
    browser.execute_async_script("""
        const [b64, done] = [arguments[0], arguments[arguments.length - 1]];
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'my snare.wav', {type: 'audio/wav'}));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
        done();""", base64.b64encode(sample.read_bytes()).decode())
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#vary-results canvas[data-drawn='1']")) == 4, 90,
             "four drawn variations")
    links = [a.get_attribute("download") for a in browser.find_elements(By.CSS_SELECTOR, "#vary-results a.download")]
    assert all(n.startswith("my snare_var_") for n in links) and len(set(links)) == 4

    browser.find_element(By.ID, "morph-from").send_keys("kick")
    browser.find_element(By.ID, "morph-to").send_keys("snare")
    browser.find_element(By.ID, "morph-make").click()
    wait_for(lambda: browser.find_element(By.ID, "morph-slider").is_enabled(), 90, "the morph slider")
    assert browser.find_element(By.ID, "morph-out").text == "0 %"
    browser.execute_script("const s = document.getElementById('morph-slider'); s.value = 6;"
                           "s.dispatchEvent(new Event('input'));")
    assert browser.find_element(By.ID, "morph-out").text == "100 %"
    t = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const a = document.getElementById('morph-audio');
        setTimeout(() => done({t: a.dataset.t, error: a.error && a.error.code, ready: a.readyState}), 500);""")
    assert t["t"] == "1" and t["error"] is None and t["ready"] >= 1, t
