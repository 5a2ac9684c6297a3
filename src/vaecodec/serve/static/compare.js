// vaecodec serve, compare page: two codecs over one image in a split view.
// All state lives in `state`; the server does the coding (POST /api/compare).
"use strict";
const state = { info: null, image: null, images: {}, seq: 0, timer: null, result: null,
                split: 0.5, scale: 1, tx: 0, ty: 0, natural: null };
window.vaecodecCompare = state;  // for tests and the curious

// the parsed JSON answer (null for another type); errors as fetchOk (common.js)
async function api(url, opts) {
  const r = await fetchOk(url, opts);
  return (r.headers.get("content-type") || "").includes("json") ? r.json() : null;
}

// ------------------------------------------------------------------ side controls
function sideEls(name) {
  const root = name === "left" ? $("#sideL") : $("#sideR");
  return { root, codec: $(".codec", root), family: $(".family", root),
           quality: $(".quality", root), qlabel: $(".qlabel", root),
           effort: $(".effort", root), elabel: $(".elabel", root),
           setting: $(".setting", root), num: $(".settingNum", root),
           stats: $(".stats", root), links: $(".links", root) };
}

function fillQualities(el) {
  const fam = state.info.ours.families[el.family.value];
  const keep = el.quality.value;
  el.quality.innerHTML = "";
  for (const q of fam.qualities) el.quality.add(new Option(String(q), String(q)));
  el.quality.value = fam.qualities.map(String).includes(keep) ? keep : String(fam.default_quality);
}

function setupSide(name, codec) {
  const el = sideEls(name);
  el.codec.add(new Option("Ours (learned)", "ours"));
  const names = { jpeg: "JPEG", webp: "WebP", avif: "AVIF", jpeg2000: "JPEG 2000", jpegxl: "JPEG XL" };
  for (const [c, info] of Object.entries(state.info.classical)) {
    const o = new Option(names[c] || c, c);
    if (!info.available) { o.disabled = true; o.title = info.reason; }
    el.codec.add(o);
  }
  for (const f of Object.keys(state.info.ours.families)) el.family.add(new Option(f, f));
  el.family.value = state.info.ours.default;
  fillQualities(el);
  for (const e of state.info.ours.efforts || [0]) el.effort.add(new Option(String(e), String(e)));
  el.codec.value = codec;
  const sync = () => { showControls(name); schedule(); };
  el.codec.addEventListener("change", () => { resetSetting(el); sync(); });
  el.family.addEventListener("change", () => { fillQualities(el); schedule(); });
  el.quality.addEventListener("change", schedule);
  el.effort.addEventListener("change", schedule);
  el.setting.addEventListener("input", () => { el.num.value = el.setting.value; schedule(); });
  el.num.addEventListener("change", () => { el.setting.value = el.num.value; schedule(); });
  resetSetting(el);
  showControls(name);
}

function resetSetting(el) {
  const c = state.info.classical[el.codec.value];
  if (!c) return;
  for (const input of [el.setting, el.num]) {
    input.min = c.min; input.max = c.max; input.step = c.integer ? 1 : 0.1;
    input.value = c.default;
  }
  el.setting.title = el.num.title = c.setting;
}

function matchedSide() {
  if (!$("#equal").checked) return null;
  const l = sideEls("left").codec.value, r = sideEls("right").codec.value;
  if (r !== "ours") return "right";
  if (l !== "ours") return "left";
  return null;
}

function showControls(name) {
  const el = sideEls(name);
  const ours = el.codec.value === "ours";
  for (const x of [el.family, el.quality, el.qlabel, el.effort, el.elabel])
    x.classList.toggle("hidden", !ours);
  for (const x of [el.setting, el.num]) {
    x.classList.toggle("hidden", ours);
    x.disabled = matchedSide() === name;
  }
}

function sideSpec(name) {
  const el = sideEls(name);
  if (el.codec.value === "ours")
    return { codec: "ours", family: el.family.value, quality: Number(el.quality.value),
             effort: Number(el.effort.value) };
  return { codec: el.codec.value, setting: Number(el.setting.value) };
}

// ------------------------------------------------------------------ images
function addImageOption(id, label) {
  const sel = $("#example");
  if (![...sel.options].some(o => o.value === id)) sel.add(new Option(label, id));
  sel.value = id;
}

async function upload(file) {
  const lim = state.info.limits;
  if (file.size > lim.max_upload_bytes) {  // the server refuses it too; spare the transfer
    showError(`the upload is larger than ${lim.max_upload_bytes.toLocaleString("en")} bytes`);
    return;
  }
  $("#busy").textContent = "uploading…";
  try {
    const r = await api(`/api/upload?name=${encodeURIComponent(file.name)}`,
                        { method: "POST", body: file });
    showError("");
    state.images[r.image] = r;
    addImageOption(r.image, `upload: ${r.name} (${r.width}×${r.height})`);
    selectImage(r.image);
  } catch (err) {
    showError(`Upload refused: ${err.message}`);
    $("#busy").textContent = "";
  }
}

function selectImage(id) {
  state.image = state.images[id];
  $("#imageInfo").textContent = `${state.image.width}×${state.image.height}`;
  state.natural = [state.image.width, state.image.height];
  // show the source on both sides until the codecs answer
  $("#imgL").src = $("#imgR").src = `/api/file/${state.image.preview}`;
  fit();
  schedule(0);
}

// ------------------------------------------------------------------ compare
function schedule(delay = 250) {
  clearTimeout(state.timer);
  state.timer = setTimeout(runCompare, delay);
}

async function runCompare() {
  if (!state.image) return;
  const seq = ++state.seq;
  const body = { image: state.image.image, left: sideSpec("left"), right: sideSpec("right"),
                 equal_bytes: $("#equal").checked };
  $("#busy").textContent = "coding…";
  document.body.dataset.state = "busy";
  try {
    const r = await api("/api/compare", { method: "POST", body: JSON.stringify(body),
                                          headers: { "Content-Type": "application/json" } });
    if (seq !== state.seq) return;  // a newer request is on its way
    showError("");
    state.result = r;
    show(r);
    $("#busy").textContent = `answered in ${(r.elapsed_s * 1000).toFixed(0)} ms`;
    document.body.dataset.state = "done";
  } catch (err) {
    if (seq !== state.seq) return;
    showError(err.message);
    $("#busy").textContent = "";
    document.body.dataset.state = "error";
  }
}

const fmt = (v, d) => (v === null || v === undefined) ? "–" : Number(v).toFixed(d);

function show(r) {
  for (const [name, img, tag] of [["left", "#imgL", "#tagL"], ["right", "#imgR", "#tagR"]]) {
    const s = r[name], el = sideEls(name);
    $(img).src = `/api/file/${s.image}`;
    $(tag).textContent = `${s.label} · ${fmt(s.bpp, 3)} bpp · ${fmt(s.psnr_db, 2)} dB`;
    const matched = r.equal_bytes && r.equal_bytes.matched === name;
    el.stats.innerHTML =
      `<b>${s.label}</b>${matched ? " (equal bytes)" : ""}<br>` +
      `<span class="bytes">${s.bytes.toLocaleString("en")}</span> bytes · ` +
      `<span class="bpp">${fmt(s.bpp, 4)}</span> bpp · ` +
      `PSNR <span class="psnr">${fmt(s.psnr_db, 2)}</span> dB · ` +
      `MS-SSIM <span class="msssim">${fmt(s.ms_ssim, 4)}</span>` +
      (s.ms_ssim_note ? ` <span class="note">(${s.ms_ssim_note})</span>` : "") +
      `<br><span class="note">encode ${(s.encode_s * 1000).toFixed(0)} ms` +
      `${s.matched ? " (size search)" : ""} · decode ${(s.decode_s * 1000).toFixed(0)} ms</span>`;
    el.links.innerHTML =
      `<a class="dl-file" href="/api/file/${s.file}?download=1" download="${s.file_name}">` +
      `Download ${s.file_name.split(".").pop()}</a>` +
      `<a class="dl-png" href="/api/file/${s.image}?download=1" download="${s.image_name}">` +
      `Download decoded PNG</a>`;
    if (matched) {
      el.setting.value = el.num.value = s.setting;
    }
  }
}

// ------------------------------------------------------------------ viewer: divider and zoom
function layout() {
  const v = $("#viewer"), w = v.clientWidth;
  const x = Math.round(state.split * w);
  $("#divider").style.left = `${x}px`;
  $("#layerR").style.clipPath = `inset(0 0 0 ${x}px)`;
  v.dataset.split = state.split.toFixed(3);
  const t = `translate(${state.tx}px, ${state.ty}px) scale(${state.scale})`;
  $("#imgL").style.transform = $("#imgR").style.transform = t;
  v.classList.toggle("pixelated", state.scale >= 2);
  $("#zoomLevel").textContent = `${Math.round(state.scale * 100)} %`;
}

function fit() {
  if (!state.natural) return;
  const v = $("#viewer");
  const [w, h] = state.natural;
  state.scale = Math.min(v.clientWidth / w, v.clientHeight / h, 4);
  state.tx = (v.clientWidth - w * state.scale) / 2;
  state.ty = (v.clientHeight - h * state.scale) / 2;
  layout();
}

function zoomAt(factor, cx, cy) {
  const s = Math.min(32, Math.max(0.05, state.scale * factor));
  state.tx = cx - (cx - state.tx) * (s / state.scale);
  state.ty = cy - (cy - state.ty) * (s / state.scale);
  state.scale = s;
  layout();
}

function setupViewer() {
  const v = $("#viewer");
  let drag = null;
  v.addEventListener("pointerdown", (e) => {
    const onHandle = e.target.closest("#divider");
    drag = { mode: onHandle ? "divider" : "pan", x: e.clientX, y: e.clientY,
             tx: state.tx, ty: state.ty };
    v.setPointerCapture(e.pointerId);
    if (!onHandle) v.classList.add("panning");
    e.preventDefault();
  });
  v.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const rect = v.getBoundingClientRect();
    if (drag.mode === "divider") {
      state.split = Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
    } else {
      state.tx = drag.tx + e.clientX - drag.x;
      state.ty = drag.ty + e.clientY - drag.y;
    }
    layout();
  });
  const end = () => { drag = null; v.classList.remove("panning"); };
  v.addEventListener("pointerup", end);
  v.addEventListener("pointercancel", end);
  v.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = v.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });
  const centre = () => [v.clientWidth / 2, v.clientHeight / 2];
  $("#zoomIn").onclick = () => zoomAt(1.5, ...centre());
  $("#zoomOut").onclick = () => zoomAt(1 / 1.5, ...centre());
  $("#zoom1").onclick = () => zoomAt(1 / state.scale, ...centre());
  $("#zoomFit").onclick = fit;
  window.addEventListener("resize", layout);
  layout();
}

// ------------------------------------------------------------------ start
async function start() {
  try {
    state.info = await api("/api/info");
  } catch (err) {
    showError(`cannot reach the server: ${err.message}`);
    return;
  }
  setupSide("left", "ours");
  const right = state.info.classical.webp && state.info.classical.webp.available ? "webp"
    : Object.keys(state.info.classical).find(c => state.info.classical[c].available) || "ours";
  setupSide("right", right);
  $("#equal").addEventListener("change", () => {
    showControls("left"); showControls("right"); schedule(0);
  });
  const sel = $("#example");
  for (const ex of state.info.examples) {
    state.images[ex.image] = ex;
    const kind = ex.photo ? "photo" : "example (synthetic)";
    sel.add(new Option(`${kind}: ${ex.name} (${ex.width}×${ex.height})`, ex.image));
  }
  sel.addEventListener("change", () => selectImage(sel.value));
  $("#uploadBtn").onclick = () => $("#upload").click();
  $("#upload").addEventListener("change", (e) => {
    if (e.target.files.length) upload(e.target.files[0]);
    e.target.value = "";
  });
  setupViewer();
  document.body.dataset.ready = "1";
  // the first example: a photo where the server was given some (serve --examples DIR)
  if (state.info.examples.length) selectImage(state.info.examples[0].image);
}
start();
