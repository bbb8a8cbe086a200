// sampleforge web page, part 2: the kit builder, variations of a dropped sample, and the morph slider.
// Uses the helpers of app.js ($, api, apiJson, saveBlob, decode, drawWave). Talks to /v1/kit*, /v1/vary, /v1/morph:
// each queues a job; the page waits for it (/v1/jobs/{id}) and fetches its result files.
"use strict";

const MAX_SEED = 2147483647;
const kit = { pieces: [], seed: null, prompt: "", pads: {}, warnings: new Set() };
const randomSeed = () => Math.floor(Math.random() * MAX_SEED);

function say(id, text, kind) {
  const n = $(id);
  n.textContent = text || "";
  n.className = "notice " + (kind || "");
  n.hidden = !text;
}

function sampling() {  // the main form's model, steps, guidance and sampler apply here too
  const out = { model: $("model").value || undefined, steps: Number($("steps").value), sampler: $("sampler").value || "ddim" };
  if ($("cfg-on").checked) out.cfg_scale = Number($("cfg").value);  // unticked: the model's own guidance
  return out;
}

function keepClass() {  // the main form's "Keep the class" applies to kits too (variations and morphs are not judged)
  const n = Number($("candidates").value);
  return !$("candidates").disabled && n > 1 ? { candidates: n } : {};
}

function postJson(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

async function postForJson(path, body) {
  const res = await postJson(path, body);
  const out = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(errorText(res, out));
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function runJob(path, body, waiting) {  // queue a workflow job and wait for it: the finished job
  let job = await postForJson(path, body);
  while (job.state === "queued" || job.state === "running") {
    await sleep(200);
    job = await jobState("/v1/jobs/" + job.job_id, waiting || (() => {}));  // through a server restart too
  }
  if (job.state !== "succeeded") throw new Error(job.error || "the job was " + job.state);
  return job;
}

async function fetchOk(url) {
  const res = await api(url);
  if (!res.ok) throw new Error(errorText(res, await res.json().catch(() => ({}))));
  return res;
}

function blobToB64(blob) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1]);
    r.onerror = () => reject(new Error("could not read the file"));
    r.readAsDataURL(blob);
  });
}

// ---- kit builder ----------------------------------------------------------------------------------------
async function initKit() {
  $("kit-related").addEventListener("input", () => { $("kit-related-out").textContent = $("kit-related").value; });
  $("kit-build").addEventListener("click", buildKit);
  $("kit-download").addEventListener("click", downloadKit);
  document.addEventListener("sampleforge:token", loadPieces);  // a token entered: what it kept out, again
  await loadPieces();
}

async function loadPieces() {
  say("kit-notice", "");
  try {
    const info = await apiJson("/v1/kit/pieces");
    const byName = Object.fromEntries(info.pieces.map((p) => [p.name, p]));
    kit.pieces = info.default.map((n) => byName[n]);
    renderPads();
  } catch (err) {
    say("kit-notice", err.message, "error");
  }
}

function renderPads() {
  const box = $("pads");
  box.innerHTML = "";
  for (const p of kit.pieces) {
    const pad = document.createElement("div");
    pad.className = "pad";
    pad.dataset.piece = p.name;
    pad.title = "play " + p.label;
    pad.innerHTML = "<div class='pad-name'></div><div class='pad-note'></div><canvas width='300' height='60'></canvas>" +
      "<div class='pad-seed'></div><button type='button' class='btn small ghost reroll' title='re-roll this pad'>↻</button>";
    pad.querySelector(".pad-name").textContent = p.label;
    pad.querySelector(".pad-note").textContent = "note " + p.note;
    pad.addEventListener("click", () => playPad(p.name));
    pad.querySelector(".reroll").addEventListener("click", (e) => { e.stopPropagation(); rerollPad(p.name); });
    box.append(pad);
  }
}

function padEl(name) { return $("pads").querySelector(".pad[data-piece='" + name + "']"); }

async function loadPad(name, padSeed) {
  const el = padEl(name);
  el.classList.add("busy");
  try {
    const job = await runJob("/v1/kit/pad", Object.assign({
      prompt: kit.prompt, piece: name, seed: kit.seed, pad_seed: padSeed, format: "wav16", length: "auto",
      relatedness: Number($("kit-related").value),
    }, sampling(), keepClass()), (text) => say("kit-notice", text));
    const r = job.results[0];
    const blob = await (await fetchOk(r.url)).blob();
    const old = kit.pads[name];
    if (old) URL.revokeObjectURL(old.url);
    kit.pads[name] = { seed: r.pad_seed, url: URL.createObjectURL(blob), prompt: r.prompt };
    el.dataset.padSeed = String(r.pad_seed);
    el.querySelector(".pad-seed").textContent = "seed " + r.pad_seed;
    drawWave(el.querySelector("canvas"), await decode(blob));
    for (const w of job.warnings || []) kit.warnings.add(w);
    if (kit.warnings.size) say("kit-notice", [...kit.warnings].join(" · "), "warn");
  } finally {
    el.classList.remove("busy");
  }
}

async function buildKit() {
  if (!kit.pieces.length) {  // /v1/kit/pieces did not answer: nothing to build (the notice says why)
    await loadPieces();
    if (!kit.pieces.length) return;
  }
  kit.prompt = $("kit-prompt").value.trim();
  kit.seed = $("kit-seed").value === "" ? randomSeed() : Number($("kit-seed").value);
  $("kit-seed").value = kit.seed;
  kit.warnings.clear();
  say("kit-notice", "");
  $("kit-build").disabled = true;
  $("kit-download").disabled = true;
  try {
    // pad k starts from seed + 1 + k, as `sampleforge kit --seed` does: the page and the CLI make the same kit
    for (const [k, p] of kit.pieces.entries()) {
      padEl(p.name).querySelector("canvas").dataset.drawn = "";
      await loadPad(p.name, (kit.seed + 1 + k) % (MAX_SEED + 1));
    }
    $("kit-download").disabled = false;
  } catch (err) {
    say("kit-notice", err.message, "error");
  } finally {
    $("kit-build").disabled = false;
  }
}

async function rerollPad(name) {
  if (kit.seed === null) { say("kit-notice", "Build the kit first.", "error"); return; }
  try { await loadPad(name, randomSeed()); } catch (err) { say("kit-notice", err.message, "error"); }
}

function playPad(name) {
  const pad = kit.pads[name];
  if (!pad) return;
  const audio = new Audio(pad.url);
  const el = padEl(name);
  el.classList.add("playing");
  audio.addEventListener("ended", () => el.classList.remove("playing"));
  audio.play().catch(() => el.classList.remove("playing"));
  kit.lastPlayed = audio;
}

async function downloadKit() {
  const pad_seeds = {};
  for (const p of kit.pieces) if (kit.pads[p.name]) pad_seeds[p.name] = kit.pads[p.name].seed;
  $("kit-download").disabled = true;
  say("kit-notice", "Rendering the kit…");
  try {
    const job = await runJob("/v1/kit", Object.assign({
      prompt: kit.prompt, seed: kit.seed, pieces: kit.pieces.map((p) => p.name), pad_seeds,
      relatedness: Number($("kit-related").value), format: "wav24", length: "auto",
    }, sampling(), keepClass()), (text) => say("kit-notice", text));
    const res = await fetchOk(job.urls.pack);
    const name = (res.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    saveBlob(await res.blob(), name ? name[1] : "kit.zip");
    say("kit-notice", "");
  } catch (err) {
    say("kit-notice", err.message, "error");
  } finally {
    $("kit-download").disabled = false;
  }
}

// ---- variations of a dropped sample ---------------------------------------------------------------------
function initVary() {
  const drop = $("drop");
  const show = () => { $("vary-strength-out").textContent = Number($("vary-strength").value).toFixed(2); };
  $("vary-strength").addEventListener("input", show);
  show();
  for (const ev of ["dragenter", "dragover"]) drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) vary(file);
  });
  $("vary-file").addEventListener("change", () => { if ($("vary-file").files[0]) vary($("vary-file").files[0]); });
}

async function vary(file) {
  say("vary-notice", "Making variations of " + file.name + "…");
  const box = $("vary-results");
  box.innerHTML = "";
  try {
    const job = await runJob("/v1/vary", Object.assign({
      audio: await blobToB64(file), prompt: $("vary-prompt").value.trim(), strength: Number($("vary-strength").value),
      count: 4, format: "wav16", length: "auto",
    }, sampling()), (text) => say("vary-notice", text));
    const stem = file.name.replace(/\.[^.]+$/, "");
    for (const c of job.results) {
      const blob = await (await fetchOk(c.url)).blob();
      await miniClip(box, blob, "seed " + c.seed, stem + "_var_" + c.seed + ".wav");
    }
    say("vary-notice", job.warnings.length ? job.warnings.join(" · ") : "", "warn");
  } catch (err) {
    say("vary-notice", err.message, "error");
  }
}

async function miniClip(box, blob, label, name) {
  const card = document.createElement("div");
  card.className = "clip";
  const canvas = document.createElement("canvas");
  canvas.width = 360;
  canvas.height = 80;
  const audio = document.createElement("audio");
  audio.controls = true;
  const url = URL.createObjectURL(blob);
  audio.src = url;
  const row = document.createElement("div");
  row.className = "clip-row";
  const seed = document.createElement("span");
  seed.className = "seed";
  seed.textContent = label;
  const dl = document.createElement("a");
  dl.className = "btn small ghost download";
  dl.textContent = "Download";
  dl.href = url;
  dl.download = name;
  row.append(seed, dl);
  card.append(canvas, audio, row);
  box.append(card);
  canvas.addEventListener("click", () => { audio.currentTime = 0; audio.play(); });
  drawWave(canvas, await decode(blob));
}

// ---- morph slider ---------------------------------------------------------------------------------------
const morph = { clips: [] };

function initMorph() {
  $("morph-make").addEventListener("click", makeMorph);
  $("morph-slider").addEventListener("input", () => showMorph(true));
}

async function makeMorph() {
  const from = $("morph-from").value.trim(), to = $("morph-to").value.trim();
  if (!from || !to) { say("morph-notice", "Type both ends of the morph.", "error"); return; }
  $("morph-make").disabled = true;
  say("morph-notice", "Morphing…");
  try {
    const steps = Number($("morph-slider").max) + 1;
    const job = await runJob("/v1/morph", Object.assign({
      from_prompt: from, to_prompt: to, from_seed: randomSeed(), morph_steps: steps, format: "wav16",
    }, sampling()), (text) => say("morph-notice", text));
    for (const c of morph.clips) URL.revokeObjectURL(c.url);
    morph.clips = [];
    for (const c of job.results) {
      const blob = await (await fetchOk(c.url)).blob();
      morph.clips.push({ t: c.t, url: URL.createObjectURL(blob), samples: await decode(blob) });
    }
    $("morph-slider").disabled = false;
    $("morph-slider").value = 0;
    showMorph(false);
    say("morph-notice", job.warnings.length ? job.warnings.join(" · ") : "", "warn");
  } catch (err) {
    say("morph-notice", err.message, "error");
  } finally {
    $("morph-make").disabled = false;
  }
}

function showMorph(play) {
  const clip = morph.clips[Number($("morph-slider").value)];
  if (!clip) return;
  $("morph-out").textContent = Math.round(clip.t * 100) + " %";
  const audio = $("morph-audio");
  audio.src = clip.url;
  audio.dataset.t = String(clip.t);
  drawWave($("morph-wave"), clip.samples);
  if (play) audio.play().catch(() => {});
}

initKit();
initVary();
initMorph();
