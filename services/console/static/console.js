// defectflow console: the live board (Server-Sent Events) and the overlay toggle.
"use strict";

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function pct(x) { return (100 * x).toFixed(1) + " %"; }

function renderBoard(table, data) {
  const body = table.tBodies[0];
  const rows = [];
  for (const c of data.cameras) {
    const tr = document.createElement("tr");
    tr.dataset.line = c.line;
    tr.dataset.camera = c.camera;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = c.line;
    tr.appendChild(th);
    cell(tr, c.camera);
    cell(tr, c.rate_per_min.toFixed(1), "num");
    cell(tr, String(c.count), "num count");
    cell(tr, pct(c.yield), "num");
    cell(tr, String(c.ng), "num");
    cell(tr, String(c.review), "num");
    const thumbs = cell(tr, "", "thumbs-cell");
    const box = document.createElement("div");
    box.className = "thumbs";
    for (const f of c.latest) {
      const a = document.createElement("a");
      a.href = "/inspection/" + encodeURIComponent(f.frame_id);
      a.className = f.verdict.toLowerCase();
      const img = document.createElement("img");
      img.src = "/img/" + encodeURIComponent(f.frame_id) + "/overlay?w=144";
      img.alt = f.verdict + " frame " + f.frame_id;
      img.loading = "lazy";
      a.appendChild(img);
      box.appendChild(a);
    }
    thumbs.appendChild(box);
    rows.push(tr);
  }
  if (rows.length) body.replaceChildren(...rows);
  const t = data.total;
  document.getElementById("total-count").textContent = String(t.count);
  document.getElementById("total-yield").textContent = t.count ? pct(t.yield) : "–";
  document.getElementById("total-ng").textContent = String(t.ng);
  document.getElementById("total-review").textContent = String(t.review);
  document.getElementById("total-rate").textContent = t.rate_per_min.toFixed(1);
}

function startBoard() {
  const table = document.getElementById("board");
  if (!table || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const source = new EventSource(table.dataset.live);
  source.addEventListener("board", (ev) => {
    renderBoard(table, JSON.parse(ev.data));
    state.textContent = "live · updated " + new Date().toLocaleTimeString();
  });
  source.addEventListener("failed", (ev) => {
    state.textContent = "live stream failed: " + JSON.parse(ev.data).error;
    source.close();
  });
  source.onerror = () => { state.textContent = "reconnecting…"; };
}

function startOverlayToggle() {
  const box = document.getElementById("toggle-overlay");
  const img = document.getElementById("frame-image");
  if (!box || !img) return;
  box.addEventListener("change", () => {
    img.src = box.checked ? img.dataset.overlay : img.dataset.plain;
    img.alt = img.alt.replace(/ with(out)? defect overlay$/, box.checked ? " with defect overlay" : " without defect overlay");
    img.dataset.showing = box.checked ? "overlay" : "plain";
  });
  img.dataset.showing = "overlay";
}

document.addEventListener("DOMContentLoaded", () => {
  startBoard();
  startOverlayToggle();
});
