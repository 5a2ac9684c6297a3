// vaecodec serve, explore page: samples, latent sliders and interpolations of a zoo VAE.
"use strict";
const state = { info: null, z: [], seed: 1, digitSeed: 0, digits: null, a: null, b: null,
                inFlight: false, dirty: false, redraws: 0, lastMs: null };
window.vaecodecExplore = state;  // for tests and the curious

const api = fetchOk;  // the Response (JSON or PNG); common.js

// ------------------------------------------------------------------ samples
async function drawSamples() {
  try {
    const r = await (await api(`/api/vae/samples?n=16&seed=${state.seed++}`)).json();
    const box = $("#samples");
    box.innerHTML = "";
    r.images.forEach((src, i) => {
      const img = new Image();
      img.src = src; img.alt = `sample ${i}`;
      box.appendChild(img);
    });
    box.dataset.seed = String(state.seed - 1);
  } catch (err) { showError(err.message); }
}

// ------------------------------------------------------------------ sliders
function buildSliders() {
  const box = $("#sliders");
  box.innerHTML = "";
  const { order, score, score_name } = state.info;
  order.forEach((u, rank) => {
    const row = document.createElement("div");
    row.className = "slider";
    row.innerHTML = `<label for="z${u}">z${u} <span class="note">${score[rank].toFixed(2)}</span></label>` +
      `<input type="range" id="z${u}" data-dim="${u}" min="-3" max="3" step="0.05" value="0">` +
      `<span class="val">0.00</span>`;
    const input = $("input", row), val = $(".val", row);
    input.addEventListener("input", () => {
      state.z[u] = Number(input.value);
      val.textContent = state.z[u].toFixed(2);
      redraw();
    });
    box.appendChild(row);
  });
  $("#order").textContent = `${state.info.latent_dim} dimensions, ordered by ${score_name}, ` +
    "highest first (number after each name).";
}

function setZ(z) {
  state.z = z.map(Number);
  for (const input of document.querySelectorAll("#sliders input")) {
    const u = Number(input.dataset.dim);
    input.value = String(Math.max(-3, Math.min(3, state.z[u])));
    input.parentElement.querySelector(".val").textContent = state.z[u].toFixed(2);
  }
  redraw();
}

// one request at a time; moves made meanwhile are sent when it returns (the latest z wins)
async function redraw() {
  if (state.inFlight) { state.dirty = true; return; }
  state.inFlight = true;
  state.dirty = false;
  const t0 = performance.now();
  try {
    const r = await api("/api/vae/decode", { method: "POST", body: JSON.stringify({ z: state.z }),
                                             headers: { "Content-Type": "application/json" } });
    const bmp = await createImageBitmap(await r.blob());
    const c = $("#decoded");
    c.width = bmp.width; c.height = bmp.height;
    c.getContext("2d").drawImage(bmp, 0, 0);
    state.lastMs = performance.now() - t0;
    state.redraws += 1;
    c.dataset.redraws = String(state.redraws);
    $("#redraw").textContent = `${state.lastMs.toFixed(0)} ms (request + decode + draw; ` +
      `server ${r.headers.get("X-Decode-Ms")} ms)`;
  } catch (err) { showError(err.message); }
  state.inFlight = false;
  if (state.dirty) redraw();
}

// ------------------------------------------------------------------ interpolation
async function loadDigits() {
  try {
    state.digits = await (await api(`/api/vae/digits?n=24&seed=${state.digitSeed++}`)).json();
  } catch (err) { showError(err.message); return; }
  state.a = state.b = null;
  $("#toSliders").disabled = true;
  const box = $("#digits");
  box.innerHTML = "";
  state.digits.images.forEach((src, i) => {
    const img = new Image();
    img.src = src;
    img.alt = `test digit ${state.digits.label[i]}`;
    img.title = `test image ${state.digits.index[i]} (label ${state.digits.label[i]})`;
    img.dataset.i = String(i);
    img.addEventListener("click", () => pick(i));
    box.appendChild(img);
  });
}

function pick(i) {
  if (state.a === null || state.b !== null) { state.a = i; state.b = null; }
  else state.b = i;
  document.querySelectorAll("#digits img").forEach((img, k) => {
    img.classList.toggle("a", k === state.a);
    img.classList.toggle("b", k === state.b);
  });
  $("#toSliders").disabled = state.a === null;
  if (state.b !== null) interpolate();
}

async function interpolate() {
  const d = state.digits;
  const q = `a=${d.index[state.a]}&b=${d.index[state.b]}&steps=10` +
            ($("#slerp").checked ? "&slerp=1" : "");
  try {
    const blob = await (await api(`/api/vae/interpolate?${q}`)).blob();
    const strip = $("#strip");
    if (strip.src.startsWith("blob:")) URL.revokeObjectURL(strip.src);
    strip.src = URL.createObjectURL(blob);
    strip.classList.remove("hidden");
    strip.dataset.pair = `${d.index[state.a]}-${d.index[state.b]}`;
  } catch (err) { showError(err.message); }
}

// ------------------------------------------------------------------ start
async function start() {
  try {
    state.info = await (await api("/api/vae")).json();
  } catch (err) { showError(`cannot load the VAE: ${err.message}`); return; }
  $("#vaeName").textContent = `${state.info.name}: ${state.info.latent_dim} latent dimensions`;
  if (state.info.note) { $("#note").textContent = state.info.note; $("#note").classList.remove("hidden"); }
  state.z = new Array(state.info.latent_dim).fill(0);
  buildSliders();
  $("#samples").addEventListener("click", drawSamples);
  $("#zero").onclick = () => setZ(new Array(state.info.latent_dim).fill(0));
  $("#random").onclick = () => setZ(state.z.map(() => {
    const u = 1 - Math.random(), v = Math.random();  // Box-Muller
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }));
  $("#toSliders").onclick = () => { if (state.a !== null) setZ(state.digits.z[state.a]); };
  $("#otherDigits").onclick = loadDigits;
  $("#slerp").onchange = () => { if (state.b !== null) interpolate(); };
  await Promise.all([drawSamples(), redraw(),
                     state.info.digits_available ? loadDigits() : Promise.resolve()]);
  if (!state.info.digits_available) {
    $("#pickNote").textContent = "Test digits are unavailable (see the note above).";
    for (const b of ["#otherDigits", "#toSliders", "#slerp"]) $(b).disabled = true;
  }
  document.body.dataset.ready = "1";
}
start();
