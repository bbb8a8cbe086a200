// sampleforge web page: vanilla JS, no build step. Talks to the /v1 API of the server that serves it.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: localStorage.getItem("sampleforge.token") || "", vocab: [], knobWords: [], classes: [], limits: {},
  models: [] };

// ---- API ----------------------------------------------------------------------------------------------
function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const res = await fetch(path, opts);
  if (res.status === 401) {
    $("token-bar").hidden = false;
    throw new Error(state.token ? "the server refused this access token: enter the right one"
                                : "this server needs an access token");
  }
  return res;
}

async function apiJson(path, options) {
  const res = await api(path, options);
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(errorText(res, body));
    err.status = res.status;
    throw err;
  }
  return body;
}

// A job's state, asked again while the server is away (restarting: a job it accepted runs again after a restart)
// or answers 5xx, for up to PATIENCE_MS; `waiting(text)` is told meanwhile. Other errors (404: the job is gone)
// end the wait.
const PATIENCE_MS = 10 * 60 * 1000;

async function jobState(url, waiting) {
  const start = Date.now();
  for (let delay = 500; ; delay = Math.min(delay * 2, 5000)) {
    try {
      return await apiJson(url);
    } catch (err) {
      const away = err instanceof TypeError || (err.status || 0) >= 500;  // fetch's network error, or 5xx
      if (!away) throw err;
      if (Date.now() - start > PATIENCE_MS) {
        throw new Error("the server has been unreachable for 10 minutes; the job (" + url.split("/").pop() +
                        ") may still finish: ask /v1/jobs for it");
      }
      waiting("server unreachable · retrying");
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

function errorText(res, body) {
  if (body && typeof body.error === "string") return body.error;
  if (body && typeof body.detail === "string") return body.detail;
  return res.status + " " + res.statusText;
}

// ---- start-up: model, vocabulary, health --------------------------------------------------------------
async function init() {
  $("token").value = state.token;
  $("token-save").addEventListener("click", () => {
    state.token = $("token").value.trim();
    localStorage.setItem("sampleforge.token", state.token);
    $("token-bar").hidden = true;
    notice("");  // what the page could not load without the token: again, with it
    document.dispatchEvent(new Event("sampleforge:token"));
    loadModel();
  });
  bindSliders();
  $("dice").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 2147483000); });
  $("prompt").addEventListener("input", suggest);
  $("form").addEventListener("submit", (e) => { e.preventDefault(); generate(); });
  $("cancel").addEventListener("click", cancel);
  $("model").addEventListener("change", () => useModel($("model").value).catch((err) => notice(err.message, "error")));
  await loadModel();
  health();
  setInterval(health, 5000);
}

async function loadModel() {
  try {
    const models = await apiJson("/v1/models");
    state.models = models.models;
    const pick = $("model");
    const chosen = pick.value || models.default;
    pick.innerHTML = "";
    for (const m of models.models) pick.append(new Option(m.name, m.name, m.name === chosen, m.name === chosen));
    $("model-field").hidden = models.models.length < 2;  // e.g. drums-v2 and drums-v2+drums-vocoder-v1
    await useModel(pick.value);
  } catch (err) {
    notice(err.message, "error");
  }
}

async function useModel(name) {  // the chosen model's samplers, limits and keywords; requests name it
  const m = state.models.find((x) => x.name === name) || state.models[0];
  state.limits = m.limits;
  $("model-name").textContent = "model " + m.name + " · " + m.sample_rate + " Hz";
  $("count").max = m.limits.max_count;
  $("steps").max = m.limits.max_steps;
  const sel = $("sampler");
  sel.innerHTML = "";
  for (const s of m.samplers) sel.append(new Option(s, s, s === "ddim", s === "ddim"));
  const judged = (m.settings || []).includes("candidates");  // sampleforge models judge their clips
  $("candidates").disabled = !judged;
  if (!judged) $("candidates").value = "1";
  const vocab = await apiJson("/v1/vocab?model=" + encodeURIComponent(m.name));
  state.vocab = vocab.keywords;
  state.classes = vocab.classes;
  state.knobWords = Object.entries((vocab.timbre && vocab.timbre.words) || {}).map(([word, knobs]) => ({
    word, title: "sets " + Object.entries(knobs).map(([k, v]) => k + " " + v).join(", ") }));
  renderClasses();
  suggest();
}

async function health() {
  try {
    const res = await fetch("/v1/health");
    const h = await res.json();
    $("status-dot").className = "dot " + (h.ready ? "ok" : "bad");
    const q = h.queue.queued + h.queue.running;
    const problems = (h.problems || []).join("; ");  // why the server is not ready, as /v1/health says it
    $("status-text").textContent = h.ready
      ? (q ? q + " job" + (q > 1 ? "s" : "") + " in queue" : "ready")
      : "not ready: " + (problems || "no worker available");
  } catch (err) {
    $("status-dot").className = "dot bad";
    $("status-text").textContent = "offline";
  }
}

// ---- the form -------------------------------------------------------------------------------------------
const KNOBS = ["decay", "brightness", "weight", "punch"];  // the timbre knobs (GenerationParams)

function bindSliders() {
  const knob = (v) => Number(v).toFixed(2);
  const cfg = (v) => ($("cfg-on").checked ? Number(v).toFixed(1) : "model's");  // unticked: the model's own
  for (const [id, fmt] of [["count", (v) => v], ["steps", (v) => v], ["cfg", cfg], ...KNOBS.map((k) => [k, knob])]) {
    const input = $(id), out = $(id + "-out");
    const show = () => { out.textContent = fmt(input.value); };
    input.addEventListener("input", show);
    show();
  }
  $("cfg").addEventListener("input", () => { $("cfg-on").checked = true; $("cfg-out").textContent = cfg($("cfg").value); });
  $("cfg-on").addEventListener("change", () => { $("cfg-out").textContent = cfg($("cfg").value); });
}

function classWords() {
  const words = new Set();
  for (const c of state.classes) for (const w of c.prompt.split(" ")) words.add(w);
  return words;
}

function renderClasses() {
  const box = $("classes");
  box.innerHTML = "";
  for (const c of state.classes) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "chip";
    b.textContent = c.label;
    b.dataset.prompt = c.prompt;
    b.addEventListener("click", () => pickClass(c));
    box.append(b);
  }
  markClass();
}

function pickClass(c) {
  // replace the words of any class in the prompt by this class's words, keep the describing words
  const cw = classWords();
  const rest = $("prompt").value.split(/\s+/).filter((w) => w && !cw.has(w.toLowerCase()));
  $("prompt").value = rest.concat(c.prompt.split(" ")).join(" ");
  markClass();
  suggest();
  $("prompt").focus();
}

function markClass() {
  const words = new Set($("prompt").value.toLowerCase().split(/\s+/));
  let best = null;
  for (const b of $("classes").children) {
    const need = b.dataset.prompt.split(" ");
    if (need.every((w) => words.has(w)) && (!best || need.length > best.dataset.prompt.split(" ").length)) best = b;
  }
  for (const b of $("classes").children) b.classList.toggle("on", b === best);
}

function suggest() {
  markClass();
  const box = $("suggest");
  box.innerHTML = "";
  const value = $("prompt").value;
  const parts = value.split(/\s+/);
  const partial = value.endsWith(" ") ? "" : (parts[parts.length - 1] || "").toLowerCase();
  const have = new Set(parts.map((w) => w.toLowerCase()));
  const cw = classWords();
  const fits = (k) => !have.has(k.word) && !cw.has(k.word) && (!partial || k.word.startsWith(partial));
  // the words that shape the sound (timbre knobs) beside the keywords; half each while nothing is typed
  const shaping = state.knobWords.filter(fits).slice(0, partial ? 10 : 5);
  const shown = new Set(shaping.map((k) => k.word));
  const words = state.vocab.filter((k) => fits(k) && !shown.has(k.word))
    .map((k) => ({ word: k.word, title: k.count + " training clips" }));
  const picks = shaping.concat(words).slice(0, 10);
  for (const k of picks) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "tag";
    b.textContent = k.word;
    b.title = k.title;
    b.addEventListener("click", () => {
      const words = $("prompt").value.split(/\s+/).filter(Boolean);
      if (partial && words.length && k.word.startsWith(words[words.length - 1].toLowerCase())) words.pop();
      words.push(k.word);
      $("prompt").value = words.join(" ") + " ";
      suggest();
      $("prompt").focus();
    });
    box.append(b);
  }
}

function notice(text, kind) {
  const n = $("notice");
  n.textContent = text;
  n.className = "notice " + (kind || "");
  n.hidden = !text;
}

// ---- generating -----------------------------------------------------------------------------------------
async function generate() {
  const prompt = $("prompt").value.trim();
  if (!prompt) { notice("Type a prompt, or pick an instrument.", "error"); return; }
  const body = {
    prompt,
    model: $("model").value || undefined,
    count: Number($("count").value),
    steps: Number($("steps").value),
    sampler: $("sampler").value || undefined,
    format: $("format").value,
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  if (Number($("candidates").value) > 1) body.candidates = Number($("candidates").value);
  if ($("cfg-on").checked) body.cfg_scale = Number($("cfg").value);  // unticked: the model's own guidance
  for (const k of KNOBS) if ($(k + "-on").checked) body[k] = Number($(k).value);  // unticked: sampled freely
  notice("");
  $("generate").disabled = true;
  showProgress(0, "queued");
  try {
    const job = await apiJson("/v1/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (job.warnings && job.warnings.length) notice(job.warnings.join(" · "), "warn");
    state.current = job;
    const done = await follow(job);
    if (done.state === "succeeded") {
      await renderJob(done);
      const said = done.warnings || [];  // the run may add what it found (candidates the judges kept none of)
      if (said.some((w) => !(job.warnings || []).includes(w))) notice(said.join(" · "), "warn");
    } else notice("Job " + done.state + (done.error ? ": " + done.error : ""), "error");
  } catch (err) {
    notice(err.message, "error");
  } finally {
    state.current = null;
    $("generate").disabled = false;
    $("progress").hidden = true;
  }
}

async function cancel() {
  const job = state.current;
  if (!job) return;
  try { await apiJson(job.urls.self, { method: "DELETE" }); } catch (err) { notice(err.message, "error"); }
}

function showProgress(p, text) {
  $("progress").hidden = false;
  $("progress-fill").style.width = Math.round(p * 100) + "%";
  $("progress-text").textContent = text;
}

function describe(job) {
  if (job.state === "queued") return "queued" + (job.queue_position ? " · " + job.queue_position + " ahead" : "");
  if (job.state === "running") return "generating · " + Math.round(job.progress * 100) + "%";
  return job.state;
}

// Follow a job's server-sent events (read with fetch so the token header goes along); poll if that fails.
async function follow(job) {
  try {
    const res = await api(job.urls.events);
    if (!res.ok || !res.body) throw new Error("no event stream");
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = "", last = job;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("\n");
        if (!data) continue;
        last = JSON.parse(data);
        showProgress(last.progress, describe(last));
        if (["succeeded", "failed", "cancelled"].includes(last.state)) { reader.cancel(); return last; }
      }
    }
    return await poll(last);
  } catch (err) {
    if (/token/.test(err.message)) throw err;
    return await poll(job);
  }
}

async function poll(job) {
  for (;;) {
    const j = await jobState(job.urls.self, (text) => showProgress(job.progress || 0, text));
    showProgress(j.progress, describe(j));
    if (["succeeded", "failed", "cancelled"].includes(j.state)) return j;
    await new Promise((r) => setTimeout(r, 500));
  }
}

// ---- results --------------------------------------------------------------------------------------------
async function fetchBlob(url) {
  const res = await api(url);
  if (!res.ok) throw new Error("download failed: " + res.status);
  return await res.blob();
}

function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

function slug(prompt) {
  return (prompt.toLowerCase().match(/[a-z0-9]+/g) || ["clip"]).join("_").slice(0, 40);
}

async function renderJob(job) {
  $("empty").hidden = true;
  const section = document.createElement("article");
  section.className = "job";
  section.dataset.jobId = job.job_id;
  const head = document.createElement("div");
  head.className = "job-head";
  const title = document.createElement("div");
  title.className = "job-title";
  title.innerHTML = "<strong></strong><span class='meta'></span>";
  title.querySelector("strong").textContent = job.prompt;
  title.querySelector(".meta").textContent = (state.models.length > 1 ? job.model + " · " : "") +
    job.params.steps + " steps · CFG " + job.params.cfg_scale + " · " + job.params.sampler + " · seed " + job.seed +
    KNOBS.filter((k) => job.params[k] != null).map((k) => " · " + k + " " + Number(job.params[k]).toFixed(2)).join("") +
    (job.params.candidates > 1 ? " · " + job.params.candidates + " candidates" : "");
  const pack = document.createElement("button");
  pack.type = "button";
  pack.className = "btn small pack";
  pack.textContent = "Download pack";
  pack.addEventListener("click", async () => {
    try { saveBlob(await fetchBlob(job.urls.pack), slug(job.prompt) + "_" + job.job_id.slice(0, 8) + ".zip"); }
    catch (err) { notice(err.message, "error"); }
  });
  head.append(title, pack);
  const grid = document.createElement("div");
  grid.className = "grid";
  section.append(head, grid);
  $("jobs").prepend(section);
  await Promise.all(job.results.map((r) => renderClip(grid, job, r)));
}

async function renderClip(grid, job, r) {
  const card = document.createElement("div");
  card.className = "clip";
  const canvas = document.createElement("canvas");
  canvas.width = 480;
  canvas.height = 120;
  canvas.title = "play";
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "auto";
  const row = document.createElement("div");
  row.className = "clip-row";
  const label = document.createElement("span");
  label.className = "seed";
  label.textContent = "seed " + r.seed;
  if ("candidate" in r) {  // with candidates: the one the drum judges kept, or none (the model's own clip)
    label.textContent += r.candidate === null ? " · model's own" : " · candidate " + r.candidate;
    label.title = r.candidate === null ? "no candidate was heard as the instrument: the model's own clip"
      : "candidate " + r.candidate + " was heard as the instrument";
  }
  const dl = document.createElement("a");
  dl.className = "btn small ghost download";
  dl.textContent = "Download";
  const name = slug(job.prompt) + "_" + job.job_id.slice(0, 8) + "_" + r.index + "." + r.url.split(".").pop();
  dl.download = name;
  row.append(label, dl);
  card.append(canvas, audio, row);
  grid.append(card);
  try {
    const blob = await fetchBlob(r.url);
    const url = URL.createObjectURL(blob);
    audio.src = url;
    dl.href = url;
    canvas.addEventListener("click", () => { audio.currentTime = 0; audio.play(); });
    drawWave(canvas, await decode(blob));
  } catch (err) {
    label.textContent = "could not load: " + err.message;
  }
}

async function decode(blob) {
  const Ctx = window.OfflineAudioContext || window.webkitOfflineAudioContext;
  const ctx = new Ctx(1, 1, 44100);
  const buf = await ctx.decodeAudioData(await blob.arrayBuffer());
  return buf.getChannelData(0);
}

// Waveform: min/max per pixel column, filled, over a faint RMS envelope.
function drawWave(canvas, samples) {
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, mid = h / 2;
  g.clearRect(0, 0, w, h);
  const grad = g.createLinearGradient(0, 0, w, 0);
  grad.addColorStop(0, "#ff7a45");
  grad.addColorStop(1, "#ffb347");
  const per = Math.max(1, Math.floor(samples.length / w));
  g.fillStyle = "rgba(255,122,69,0.16)";
  for (let x = 0; x < w; x++) {
    let sum = 0;
    for (let i = x * per; i < (x + 1) * per && i < samples.length; i++) sum += samples[i] * samples[i];
    const rms = Math.sqrt(sum / per);
    g.fillRect(x, mid - rms * mid, 1, 2 * rms * mid);
  }
  g.fillStyle = grad;
  for (let x = 0; x < w; x++) {
    let lo = 0, hi = 0;
    for (let i = x * per; i < (x + 1) * per && i < samples.length; i++) {
      const s = samples[i];
      if (s < lo) lo = s;
      if (s > hi) hi = s;
    }
    g.fillRect(x, mid - hi * mid * 0.95, 1, Math.max(1, (hi - lo) * mid * 0.95));
  }
  g.fillStyle = "rgba(255,255,255,0.08)";
  g.fillRect(0, mid, w, 1);
  canvas.dataset.drawn = "1";
}

init();
