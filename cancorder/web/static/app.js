// cancorder's web page: status once a second and the live table, both from one
// Server-Sent Events stream of the logger itself (nothing is fetched from anywhere else).
"use strict";

const state = { bus: null, paused: false, sort: "id", live: null, status: null, source: null, renderedAt: 0 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function number(value, digits) {
  if (value === null || value === undefined) return "-";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits || 0 });
}

function bytes(size) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit++; }
  return `${unit ? size.toFixed(1) : size} ${units[unit]}`;
}

function duration(seconds) {
  seconds = Math.floor(seconds);
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24;
  const m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  return (d ? `${d}d ` : "") + (d || h ? `${h}h ` : "") + (d || h || m ? `${m}m ` : "") + `${s}s`;
}

function badgeClass(busState) {
  if (busState === "up") return "badge up";
  if (busState === "error warning" || busState === "error passive" || busState === "starting")
    return "badge warn";
  return "badge down";
}

function clock(seconds) {  // a frame's timestamp as the time of day, to the microsecond
  const date = new Date(seconds * 1000);
  const pad = (n, w) => String(n).padStart(w || 2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.` +
    pad(Math.round((seconds % 1) * 1e6) % 1000000, 6);
}

// ---- status ----

function drawChart(canvas, history) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth * ratio, height = canvas.clientHeight * ratio;
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  if (!history.length) return;
  const top = Math.max(...history, 1);
  const step = width / Math.max(history.length - 1, 1);
  ctx.beginPath();
  history.forEach((value, i) => {
    const x = i * step, y = height - (value / top) * (height - 14 * ratio) - 2 * ratio;
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.strokeStyle = "#1f5fbf"; ctx.lineWidth = 1.5 * ratio; ctx.stroke();
  ctx.fillStyle = "#6b7480"; ctx.font = `${11 * ratio}px system-ui, sans-serif`;
  ctx.fillText(`${number(top)} frames/s (last ${duration(history.length)})`, 4 * ratio, 12 * ratio);
}

function busCard(bus) {
  const card = el("div", { class: "bus", dataset: { bus: bus.name } });
  card.append(el("h3", {}, bus.name, el("span", { class: badgeClass(bus.state) + " state" }, bus.state),
                 el("span", { class: "none" }, bus.source)));
  const facts = el("div", { class: "facts" },
    el("span", {}, "frames/s ", el("b", { class: "rate" }, number(bus.rate))),
    el("span", {}, "frames ", el("b", { class: "frames" }, number(bus.frames))),
    el("span", {}, "bit rate ", el("b", {}, bus.bitrate ? number(bus.bitrate) : "-")),
    el("span", {}, "port ", el("b", {}, bus.port ?? "-")),
    el("span", {}, "reopens ", el("b", {}, bus.reopens)));
  if (bus.reason) facts.append(el("span", { class: "reason" }, bus.reason));
  card.append(facts);
  const canvas = el("canvas", { class: "chart" });
  card.append(canvas);
  requestAnimationFrame(() => drawChart(canvas, bus.history));

  card.append(el("h2", {}, `Clients (${bus.clients.length})`));
  if (bus.clients.length) {
    const rows = bus.clients.map((c) => el("tr", {}, el("td", {}, c.protocol), el("td", { class: "address" }, c.address),
      el("td", { class: "num" }, bytes(c.queued)), el("td", { class: "num wide" }, bytes(c.sent))));
    card.append(el("div", { class: "scroll" }, el("table", { class: "clients" },
      el("thead", {}, el("tr", {}, el("th", {}, "Protocol"), el("th", {}, "Address"),
        el("th", {}, "Behind"), el("th", { class: "wide" }, "Sent"))), el("tbody", {}, ...rows))));
  } else {
    card.append(el("div", { class: "none" }, "no client connected"));
  }
  for (const sink of bus.sinks) {
    card.append(el("h2", {}, sink.name), el("div", { class: "summary" }, sink.summary || "-"));
    if (!sink.files.length) continue;
    const rows = sink.files.slice().reverse().map((f) => {
      const name = f.open ? el("span", {}, f.name, " ", el("span", { class: "badge up" }, "recording"))
        : el("a", { href: `/api/download?bus=${encodeURIComponent(bus.name)}&file=${encodeURIComponent(f.path)}`,
                    download: f.name, class: "download" }, f.name);
      return el("tr", {}, el("td", {}, name), el("td", { class: "num" }, bytes(f.size)));
    });
    card.append(el("div", { class: "scroll" }, el("table", { class: "files" }, el("tbody", {}, ...rows))));
  }
  return card;
}

function showStatus(status) {
  state.status = status;
  document.getElementById("process").textContent =
    `version ${status.version}, ${status.core} core, up ${duration(status.uptime)}`;
  const buses = document.getElementById("buses");
  buses.replaceChildren(...status.buses.map(busCard));
  const warnings = document.getElementById("warnings");
  warnings.replaceChildren(...(status.warnings.length ? status.warnings.map((w) =>
    el("li", {}, `${new Date(w.time * 1000).toLocaleTimeString()} ${w.bus ? w.bus + ": " : ""}${w.text}`))
    : [el("li", { class: "none" }, "none")]));
  const select = document.getElementById("bus");
  const names = status.buses.map((b) => b.name);
  if (select.options.length !== names.length || [...select.options].some((o, i) => o.value !== names[i])) {
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (state.bus && names.includes(state.bus)) select.value = state.bus;
  }
  if (state.bus === null && names.length) { state.bus = names[0]; select.value = state.bus; }
}

// ---- live ----

function dataCell(row, now, hotFor) {
  const cell = el("td", { class: "data" });
  row.data.split(" ").forEach((byte, i) => {
    if (!byte) return;
    if (i) cell.append(" ");
    const at = row.changedAt[i];
    cell.append(at !== null && at !== undefined && at >= now - hotFor ? el("span", { class: "hot" }, byte) : byte);
  });
  return cell;
}

// The logger sends times on its own clock (``now`` at the update), not ages: a row that took
// no frame is sent unchanged, and the ages go on growing here between two updates.
function loggerNow(live) {
  return live.now + (performance.now() - live.receivedAt) / 1000;
}

function unpackRow(r) {  // [id, flags, count, period, data, changedAt, seen, changed, name, signals]
  return {
    id: r[0], ext: Boolean(r[1] & 1), fd: Boolean(r[1] & 2), count: r[2], rate: 0,
    period: r[3], len: r[4] ? (r[4].length + 1) / 3 : 0, data: r[4], changedAt: r[5], seen: r[6],
    changed: r[7], name: r[8], signals: r[9],
  };
}

function sortRows(rows) {
  const by = state.sort;
  const key = {
    id: (r) => [r.ext ? 1 : 0, parseInt(r.id, 16)],
    count: (r) => [-r.count], rate: (r) => [-r.rate], period: (r) => [r.period ?? Infinity],
    len: (r) => [-r.len], name: (r) => [r.name || "\uffff"],
  }[by];
  return rows.slice().sort((a, b) => {
    const x = key(a), y = key(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    return parseInt(a.id, 16) - parseInt(b.id, 16);
  });
}

// An update has every row (``rows``: on connecting, or after a missed update) or only those
// that changed since update ``since`` (``changed``: [place, row] pairs); the rates of all.
function showLive(live) {
  live.receivedAt = performance.now();
  if (live.rows) {
    live.rows = live.rows.map(unpackRow);
  } else if (state.live && state.live.seq === live.since) {
    live.rows = state.live.rows;
    for (const [place, row] of live.changed) live.rows[place] = unpackRow(row);
  } else {  // not the update it builds on (the logger sends whole tables then): start again
    connect();
    return;
  }
  live.rows.forEach((row, i) => { row.rate = live.rates[i]; });
  state.live = live;
  if (state.paused) return;
  renderLive();
}

function renderLive() {
  const live = state.live;
  if (!live) return;
  const wanted = document.getElementById("filter").value.trim().toLowerCase();
  let rows = live.rows;
  if (wanted) rows = rows.filter((r) => r.id.toLowerCase().includes(wanted) || (r.name || "").toLowerCase().includes(wanted));
  rows = sortRows(rows);
  const now = loggerNow(live);
  state.renderedAt = performance.now();
  const body = document.querySelector("#live tbody");
  body.replaceChildren(...rows.map((r) => {
    const signals = r.signals ? (r.signals.error ? el("div", { class: "signals" }, "!" + r.signals.error)
      : el("div", { class: "signals" }, ...Object.entries(r.signals).map(([k, v]) => el("span", { class: "signal", dataset: { signal: k } }, `${k}=${v}`))))
      : null;
    const age = now - r.seen;
    return el("tr", { dataset: { id: r.id }, class: age > Math.max(2, 3 * (r.period || 0) / 1000) ? "stale" : "",
                      title: `last frame ${age.toFixed(1)} s ago, data changed ${(now - r.changed).toFixed(1)} s ago` },
      el("td", { class: "id" }, r.id), el("td", { class: "num count" }, number(r.count)),
      el("td", { class: "num" }, number(r.rate, 1)), el("td", { class: "num" }, r.period === null ? "-" : number(r.period, 2)),
      el("td", { class: "num" }, r.len), dataCell(r, now, live.hot_for), el("td", {}, r.name || "", signals));
  }));
  document.getElementById("live-summary").textContent =
    `${number(live.total)} frames, ${number(live.rate)}/s, ${rows.length} of ${live.ids} ids` +
    (live.unlisted ? `, ${number(live.unlisted)} frames of ids beyond the first ${number(live.ids)} not listed` : "") +
    (live.dropped ? `, about ${number(live.dropped)} frames not counted (the page fell behind)` : "");
  const trace = document.querySelector("#trace tbody");
  trace.replaceChildren(...live.trace.map((f) => el("tr", {}, el("td", {}, clock(f.t)),
    el("td", {}, f.id), el("td", {}, f.data))));
}

// ---- the stream ----

function connect() {
  if (state.source) state.source.close();
  const query = state.bus === null ? "" : `?bus=${encodeURIComponent(state.bus)}`;
  const source = state.source = new EventSource(`/api/events${query}`);
  const badge = document.getElementById("connection");
  source.onopen = () => { badge.textContent = "live"; badge.className = "badge live"; };
  source.onerror = () => { badge.textContent = "offline"; badge.className = "badge offline"; };
  source.addEventListener("status", (event) => showStatus(JSON.parse(event.data)));
  source.addEventListener("live", (event) => showLive(JSON.parse(event.data)));
}

function showTab(name) {
  for (const tab of ["status", "live"]) {
    document.getElementById(`tab-${tab}`).classList.toggle("active", tab === name);
    document.getElementById(`${tab}-view`).hidden = tab !== name;
  }
  if (name === "status" && state.status) showStatus(state.status);  // the charts' widths
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("tab-status").addEventListener("click", () => showTab("status"));
  document.getElementById("tab-live").addEventListener("click", () => showTab("live"));
  if (location.hash === "#live") showTab("live");
  document.getElementById("filter").addEventListener("input", renderLive);
  document.getElementById("pause").addEventListener("click", (event) => {
    state.paused = !state.paused;
    event.target.textContent = state.paused ? "Resume" : "Pause";
    event.target.classList.toggle("paused", state.paused);
    renderLive();
  });
  document.getElementById("bus").addEventListener("change", (event) => {
    state.bus = event.target.value; state.live = null; connect();
  });
  for (const th of document.querySelectorAll("#live th[data-sort]")) {
    th.addEventListener("click", () => {
      state.sort = th.dataset.sort;
      for (const other of document.querySelectorAll("#live th")) other.classList.toggle("sorted", other === th);
      renderLive();
    });
  }
  document.querySelector('#live th[data-sort="id"]').classList.add("sorted");
  if (location.search.includes("token=")) {  // the cookie now carries it: a clean address bar
    history.replaceState(null, "", location.pathname + location.hash);
  }
  // between two updates (a slow one, or a quiet bus): the ages, stale rows and highlights move on
  setInterval(() => {
    if (!state.paused && state.live && performance.now() - (state.renderedAt || 0) > 900) renderLive();
  }, 1000);
  connect();
});
