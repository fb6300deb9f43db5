"""The web page at `/`: a form built from /metadata (one field per input column, or an image
upload; a table upload too), the prediction and the class probabilities as a bar chart.
Self-contained: no script or style from elsewhere."""
from __future__ import annotations

import html

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__ · scaletrain</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px/1.45 system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}
 h1{font-size:1.3em} label{display:block;margin:.6em 0 .15em;font-weight:600}
 input,select,textarea{font:inherit;width:100%;box-sizing:border-box;padding:.3em}
 textarea{height:6em} button{margin-top:1em;font:inherit;padding:.4em 1.4em;cursor:pointer}
 #result{margin-top:1.5em} #prediction{font-size:1.4em;font-weight:700}
 .bar{display:flex;align-items:center;margin:.2em 0} .bar span{width:9em;overflow:hidden}
 .bar div{background:#4a7bd0;height:1.1em;margin:0 .5em} .error{color:#b00020} .warn{color:#8a5a00}
 .meta{color:#666;font-size:.9em}
</style></head><body>
<h1>__TITLE__</h1><p class="meta" id="about">loading the model's description…</p>
<form id="form"><div id="fields"></div>
<label for="file">or upload a file <span class="meta" id="filehint"></span></label>
<input type="file" id="file" name="file">
<button type="submit" id="submit">Predict</button></form>
<div id="result"><div id="prediction"></div><div id="bars"></div><div id="warnings" class="warn"></div>
<div id="error" class="error"></div></div>
<script>
let meta = null;
const el = (tag, attrs = {}, text = "") => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); e.textContent = text; return e; };
async function load() {
  meta = await (await fetch("metadata")).json();
  const score = Object.entries(meta.metrics || {}).slice(0, 3).map(([k, v]) => `${k} ${Number(v).toFixed(3)}`).join(", ");
  document.getElementById("about").textContent = `${meta.task} · predicts ${meta.target || "the class"} · ${meta.model}` +
    (score ? ` · test ${score}` : "");
  const items = {image: "(an image)", audio: "(a sound: WAV, FLAC, OGG or MP3)"};
  const box = document.getElementById("fields"), item = meta.inputs.find(f => f.type in items);
  document.getElementById("filehint").textContent = item ? items[item.type] : "(CSV, Parquet or JSONL rows)";
  for (const f of meta.inputs.filter(f => !(f.type in items))) {
    box.appendChild(el("label", {for: "f_" + f.name}, f.name));
    let input;
    if (f.type === "text") input = el("textarea");
    else if (f.type === "boolean") { input = el("select");
      for (const v of ["", "true", "false"]) input.appendChild(el("option", {value: v}, v || "(missing)")); }
    else if (f.type === "category") { input = el("input", {list: "l_" + f.name});
      const list = el("datalist", {id: "l_" + f.name});
      for (const v of f.values.slice(0, 200)) list.appendChild(el("option", {value: v}));
      box.appendChild(list); }
    else if (f.type === "image_cell" || f.type === "sound_cell") {  // sent inline, as a data: URI
      input = el("input", {type: "file", accept: f.type === "image_cell" ? "image/*" : "audio/*"});
      input.addEventListener("change", () => { const reader = new FileReader();
        reader.onload = () => { input.dataset.uri = reader.result; }; reader.readAsDataURL(input.files[0]); }); }
    else input = el("input", f.type === "number" ? {type: "number", step: "any"} : {});
    input.id = "f_" + f.name; input.dataset.name = f.name; input.dataset.type = f.type; box.appendChild(input);
  }
}
function row() {
  const r = {};
  for (const input of document.querySelectorAll("#fields [data-name]")) {
    const v = input.dataset.type.endsWith("_cell") ? (input.dataset.uri || "") : input.value.trim();
    r[input.dataset.name] = v === "" ? null : input.dataset.type === "number" ? Number(v) : v;
  }
  return r;
}
function show(answer) {
  document.getElementById("prediction").textContent = "Prediction: " + answer.predictions.join(", ");
  const bars = document.getElementById("bars"); bars.innerHTML = "";
  const p = (answer.probabilities || [])[0] || {};
  for (const [name, value] of Object.entries(p).sort((a, b) => b[1] - a[1])) {
    const line = el("div", {class: "bar"}); line.appendChild(el("span", {}, name));
    const bar = el("div"); bar.style.width = Math.max(1, Math.round(value * 300)) + "px"; line.appendChild(bar);
    line.appendChild(el("em", {}, (100 * value).toFixed(1) + "%")); bars.appendChild(line);
  }
  document.getElementById("warnings").textContent = (answer.warnings || []).join("; ");
}
document.getElementById("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  document.getElementById("error").textContent = "";
  const file = document.getElementById("file").files[0];
  let request;
  if (file) { const data = new FormData(); data.append("file", file); request = {method: "POST", body: data}; }
  else request = {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify({records: [row()]})};
  const response = await fetch("predict", request), answer = await response.json();
  if (!response.ok) { document.getElementById("error").textContent = answer.error || response.statusText; return; }
  show(answer);
});
load();
</script></body></html>
"""


def page_html(title: str) -> str:
    """The page, titled with the run's name."""
    return PAGE.replace("__TITLE__", html.escape(title))
