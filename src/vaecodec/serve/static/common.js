// vaecodec serve: what both pages use (loaded before compare.js / explore.js).
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);

// the error line keeps its place when empty (invisible), so the page below it never jumps
function showError(msg) {
  const e = $("#error");
  e.textContent = msg;
  e.classList.toggle("empty", !msg);
}

// fetch, and throw the server's one-line `error` (or the HTTP status) unless the answer is OK
async function fetchOk(url, opts) {
  const r = await fetch(url, opts);
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}
