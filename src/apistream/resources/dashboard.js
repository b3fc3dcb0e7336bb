// Polls /api/state and redraws the page; keeps the table's sort order across refreshes.
"use strict";

const refreshMs = Number(document.body.dataset.refreshMs) || 3000;
let sortKey = "requests";
let sortDesc = true;
let lastState = null;

const fmt = {
  int: (v) => v.toLocaleString("en-US", { maximumFractionDigits: 0 }),
  num: (v) => v.toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 }),
  pct: (v) => (100 * v).toFixed(2) + "%",
};

function setValue(id, value, text) {
  const el = document.getElementById(id);
  el.dataset.value = String(value);
  el.textContent = text;
}

function cell(value, format, cls) {
  const td = document.createElement("td");
  if (value !== null && value !== undefined) {
    td.dataset.value = String(value);
    td.textContent = format ? format(value) : value;
  }
  if (cls) td.className = cls;
  return td;
}

function renderTable(rows) {
  const sorted = [...rows].sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    const c = x === y ? 0 : x === null ? -1 : y === null ? 1 : x < y ? -1 : 1;
    return sortDesc ? -c : c;
  });
  const body = document.querySelector("#endpoints tbody");
  body.replaceChildren(...sorted.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.endpoint = r.endpoint;
    const overSlo = r.latency_slo_ms !== null && r.latency_p95_ms > r.latency_slo_ms;
    tr.append(
      cell(r.endpoint), cell(r.requests, fmt.int), cell(r.rate_4xx, fmt.pct),
      cell(r.rate_5xx, fmt.pct), cell(r.latency_avg_ms, fmt.num),
      cell(r.latency_p95_ms, fmt.num, overSlo ? "over-slo" : ""), cell(r.worst_p95_ms, fmt.num),
      cell(r.latency_slo_ms, fmt.int));
    return tr;
  }));
  document.querySelectorAll("#endpoints th").forEach((th) => {
    th.classList.toggle("sorted-asc", th.dataset.key === sortKey && !sortDesc);
    th.classList.toggle("sorted-desc", th.dataset.key === sortKey && sortDesc);
  });
}

document.querySelectorAll("#endpoints th[data-key]").forEach((th) => {
  th.addEventListener("click", () => {
    if (sortKey === th.dataset.key) sortDesc = !sortDesc;
    else { sortKey = th.dataset.key; sortDesc = sortKey !== "endpoint"; }
    if (lastState && lastState.endpoints) renderTable(lastState.endpoints);
  });
});

const layout = (extra) => Object.assign({
  margin: { l: 50, r: 10, t: 10, b: 40 }, showlegend: false, hovermode: "x unified",
}, extra);
const plotConfig = { displaylogo: false, responsive: true };

function renderCharts(s) {
  const x = s.windows;
  Plotly.react("chart-throughput", [
    { x, y: s.requests_per_min, type: "scatter", mode: "lines", name: "requests/min" },
  ], layout({}), plotConfig);
  Plotly.react("chart-errors", [
    { x, y: s.rate_4xx, type: "scatter", mode: "lines", name: "4xx" },
    { x, y: s.rate_5xx, type: "scatter", mode: "lines", name: "5xx" },
  ], layout({ yaxis: { tickformat: ".1%" }, showlegend: true }), plotConfig);
  Plotly.react("chart-latency", Object.entries(s.p95_ms).map(([name, y]) => (
    { x, y, type: "scatter", mode: "lines", name, connectgaps: false }
  )), layout({ yaxis: { type: "log" }, showlegend: true, hovermode: "closest" }), plotConfig);
}

function renderAnomalies(rows) {
  const box = document.getElementById("anomalies");
  if (rows === undefined) {  // no database (yet): nothing to say
    box.innerHTML = "";
    return;
  }
  if (rows.length === 0) {
    box.innerHTML = '<p class="note">No anomalies detected.</p>';
    return;
  }
  const table = document.createElement("table");
  table.innerHTML = "<thead><tr><th>window</th><th>endpoint</th><th>method</th><th>metric</th>" +
    "<th>observed</th><th>baseline</th><th>z</th><th>severity</th><th>detector</th></tr></thead>";
  const body = document.createElement("tbody");
  for (const a of rows) {
    const tr = document.createElement("tr");
    tr.className = "anomaly";
    tr.append(cell(a.window_start), cell(a.endpoint), cell(a.method), cell(a.metric),
      cell(a.observed, (v) => v.toPrecision(4)), cell(a.baseline_mean, (v) => v.toPrecision(4)),
      cell(a.z_score, (v) => v.toFixed(1)), cell(a.severity), cell(a.detector));
    body.append(tr);
  }
  table.append(body);
  box.replaceChildren(table);
}

function renderQuality(q) {
  const box = document.getElementById("quality");
  if (!q) { box.textContent = "–"; return; }
  const table = document.createElement("table");
  table.id = "quality-table";
  const body = document.createElement("tbody");
  const row = (label, key, value) => {
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    tr.append(cell(label), cell(value, fmt.int));
    body.append(tr);
  };
  for (const k of ["input", "valid", "quarantined", "duplicates", "late"]) row(k, k, q[k]);
  for (const [reason, n] of q.reasons) row("  quarantined: " + reason, "reason:" + reason, n);
  table.append(body);
  const check = document.createElement("p");
  check.id = "balance";
  check.className = q.balanced ? "ok" : "bad";
  check.textContent = "input = valid + quarantined + duplicates + late: " +
    (q.balanced ? "holds" : "DOES NOT HOLD");
  box.replaceChildren(table, check);
}

function render(state) {
  lastState = state;
  const banner = document.getElementById("banner");
  const content = document.getElementById("content");
  document.getElementById("read-at").textContent = state.read_at;
  document.body.dataset.status = state.status;
  document.body.dataset.version = state.version || "";
  document.getElementById("version").textContent = state.version === undefined ? "–" :
    `metrics batch ${state.metrics_batch ?? "–"} · events batch ${state.events_batch ?? "–"}`;
  if (state.status !== "ok") {
    banner.hidden = false;
    banner.className = state.status === "waiting" ? "banner" : "banner error";
    banner.id = "banner";
    banner.textContent = state.status === "waiting"
      ? `Waiting for data: ${state.path} has no endpoint metrics yet.`
      : state.message;
    content.hidden = true;
  } else {
    banner.hidden = true;
    content.hidden = false;
    const h = state.headline;
    setValue("rps", h.requests_per_s, fmt.num(h.requests_per_s));
    setValue("error-rate", h.error_rate, fmt.pct(h.error_rate));
    setValue("p95", h.p95_ms, fmt.num(h.p95_ms) + " ms");
    document.getElementById("span").textContent =
      `${fmt.int(h.requests)} requests, ${h.span_start} – ${h.span_end}`;
    document.getElementById("error-split").textContent =
      `4xx ${fmt.pct(h.rate_4xx)} · 5xx ${fmt.pct(h.rate_5xx)}`;
    renderTable(state.endpoints);
    renderCharts(state.series);
  }
  renderAnomalies(state.status === "missing" ? undefined : state.anomalies);
  renderQuality(state.quality);
}

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    render(await response.json());
  } catch (err) {
    const banner = document.getElementById("banner");
    banner.hidden = false;
    banner.className = "banner error";
    banner.textContent = "dashboard server not reachable: " + err;
  } finally {
    setTimeout(poll, refreshMs);
  }
}

poll();
