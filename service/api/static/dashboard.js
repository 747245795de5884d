// router-health dashboard: plain JS, no framework, no build step.
//
// Reads the same API as any client: GET /v1/health/?details=true once, then
// GET /v1/health/history (background checks on) to seed the charts and
// GET /v1/health/uptime?window=24h (storage on; a 404 means off: nothing is
// shown, nothing asked again) for each adapter's uptime, then the live event stream GET /v1/health/stream (Server-Sent Events, read with
// fetch() so it can carry the Authorization header; EventSource cannot).
// Every string from the API goes into the DOM through textContent or
// setAttribute, never as markup.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "router-health-token";
  const SPARK_POINTS = 30;
  const SPARK_W = 190, SPARK_H = 32; // the chart's size in CSS pixels (dashboard.css)
  const STATUSES = ["healthy", "degraded", "unhealthy", "timeout", "unsupported"];
  const MAX_BACKOFF_MS = 30000;
  const UPTIME_WINDOW = "24h";
  const UPTIME_REFRESH_MS = 60000; // uptime over a day moves slowly
  // failures that say nothing about the provider (service/cache.py)
  const NOT_ABOUT_PROVIDER = new Set(["deadline", "not_started", "not_open", "resource"]);

  const $ = (id) => document.getElementById(id);

  const state = {
    cells: new Map(), // "model\u0000provider" -> cell record
    rows: new Map(), // model -> {row, cells container, status element}
    background: null, // from the report's "source" or the stream's hello
    retryMs: 2000, // the server's "retry:" field wins
    generation: 0, // bumped on every (re)start: older loops stop
    streamAbort: null,
    runs: 0,
  };

  class AuthError extends Error {}

  // -- small helpers --------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "className") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    return node;
  }

  function known(status) {
    return STATUSES.includes(status) ? status : "unknown";
  }

  function formatMs(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return "– ms";
    return ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
  }

  function formatSeconds(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return "–";
    return s >= 10 ? `${s.toFixed(1)} s` : `${s.toFixed(3)} s`;
  }

  function formatTime(unixSeconds) {
    const date = unixSeconds ? new Date(unixSeconds * 1000) : new Date();
    return date.toLocaleTimeString();
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
  }

  function clearError() {
    const box = $("error");
    box.textContent = "";
    box.hidden = true;
  }

  // -- the API --------------------------------------------------------------

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch {
      return null;
    }
  }

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const bearer = token();
    if (bearer) headers.set("Authorization", `Bearer ${bearer}`);
    const response = await fetch(path, { cache: "no-store", ...options, headers });
    if (response.status === 401) {
      let message = "";
      try {
        message = (await response.json()).message || "";
      } catch {
        // not JSON: keep the generic message
      }
      askForToken(bearer ? "The token was not accepted." : message || "A token is needed.");
      throw new AuthError("unauthorized");
    }
    return response;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return `${body.error || "error"}: ${body.message || ""}`.trim();
    } catch {
      return response.statusText || "no details";
    }
  }

  // -- auth -----------------------------------------------------------------

  function askForToken(message) {
    $("auth-message").textContent = message;
    $("auth").hidden = false;
    setStreamState("off", "needs a token");
  }

  function setupAuthForm() {
    $("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (!value) return;
      try {
        sessionStorage.setItem(TOKEN_KEY, value);
      } catch {
        showError("This browser does not allow sessionStorage; the token cannot be kept.");
        return;
      }
      $("token").value = "";
      $("auth").hidden = true;
      start();
    });
  }

  // -- the grid -------------------------------------------------------------

  function key(model, provider) {
    return `${model}\u0000${provider}`;
  }

  function ensureRow(model) {
    let row = state.rows.get(model);
    if (row) return row;
    const statusText = el("span", { className: "model-status", text: "unknown" });
    const name = el("th", { scope: "row" }, el("span", { className: "model-name", text: model }), statusText);
    const cells = el("div", { className: "cells" });
    const tr = el("tr", { "data-model": model, "data-status": "unknown" }, name, el("td", {}, cells));
    $("grid-body").append(tr);
    $("grid-empty").hidden = true;
    row = { tr, cells, statusText };
    state.rows.set(model, row);
    return row;
  }

  function ensureCell(model, provider) {
    const k = key(model, provider);
    let cell = state.cells.get(k);
    if (cell) return cell;
    const row = ensureRow(model);
    const statusText = el("span", { className: "status-text", text: "unknown" });
    const uptime = el("span", { className: "uptime" });
    const latency = el("span", { className: "latency", text: "– ms" });
    const errorLine = el("div", { className: "error-text" });
    const spark = svg("svg", { class: "spark", viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, role: "img" });
    const sparkTitle = svg("title");
    spark.append(sparkTitle);
    const node = el(
      "div",
      { className: "cell", "data-model": model, "data-provider": provider, "data-status": "unknown" },
      el("div", { className: "cell-head" }, el("span", { className: "provider", text: provider }), latency),
      el("div", { className: "cell-status" }, el("span", { className: "dot", "aria-hidden": "true" }), statusText, uptime),
      errorLine,
      spark,
    );
    node.addEventListener("animationend", () => node.classList.remove("flash"));
    row.cells.append(node);
    cell = { model, provider, node, statusText, uptime, latency, errorLine, spark, sparkTitle, status: "unknown", history: [] };
    state.cells.set(k, cell);
    return cell;
  }

  function setCellStatus(cell, status, { flash = false } = {}) {
    const next = known(status);
    const changed = next !== cell.status;
    cell.status = next;
    cell.node.setAttribute("data-status", next);
    cell.statusText.textContent = next;
    if (flash && changed) {
      cell.node.classList.remove("flash");
      void cell.node.offsetWidth; // restart the animation
      cell.node.classList.add("flash");
    }
    updateModel(cell.model);
  }

  function setCellDetail(cell, result) {
    if ("latency_ms" in result) {
      cell.latency.textContent = formatMs(result.latency_ms);
      cell.node.setAttribute("data-latency", result.latency_ms === null ? "" : String(result.latency_ms));
    }
    const error = result.error || "";
    cell.errorLine.textContent = error;
    cell.node.title = error ? `${cell.provider}: ${error}` : `${cell.provider}: ${cell.status}`;
  }

  function pushHistory(cell, entry) {
    cell.history.push({ latency: entry.latency_ms ?? null, status: known(entry.status) });
    if (cell.history.length > SPARK_POINTS) cell.history.splice(0, cell.history.length - SPARK_POINTS);
    drawSparkline(cell);
  }

  function drawSparkline(cell) {
    const { spark, history } = cell;
    for (const child of [...spark.childNodes]) if (child !== cell.sparkTitle) child.remove();
    const w = SPARK_W, h = SPARK_H, pad = 3;
    const latencies = history.map((p) => p.latency).filter((v) => v !== null && Number.isFinite(v));
    // scaled to the window's own range, so small changes show
    let lo = Math.min(...latencies), hi = Math.max(...latencies);
    if (!latencies.length) { lo = 0; hi = 1; }
    const minRange = Math.max(2, hi * 0.25); // a flat line stays flat
    if (hi - lo < minRange) {
      const mid = (hi + lo) / 2;
      lo = mid - minRange / 2;
      hi = mid + minRange / 2;
    }
    const step = (w - 2 * pad) / Math.max(1, history.length - 1);
    const points = history.map((p, i) => {
      const x = history.length === 1 ? w - pad : pad + i * step;
      // no latency (never answered): drawn at the top
      const y = p.latency === null ? pad : h - pad - ((p.latency - lo) / (hi - lo)) * (h - 2 * pad);
      return { x, y, status: p.status };
    });
    if (points.length > 1) {
      spark.append(svg("polyline", { points: points.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ") }));
    }
    for (const p of points) {
      spark.append(svg("circle", { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: 1.8, "data-status": p.status }));
    }
    const counts = {};
    for (const p of history) counts[p.status] = (counts[p.status] || 0) + 1;
    const summary = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
    const label = history.length
      ? `Last ${history.length} checks: ${summary}; latest latency ${formatMs(history[history.length - 1].latency)}, range ${formatMs(lo)}–${formatMs(hi)}`
      : "No checks yet";
    cell.sparkTitle.textContent = label;
    spark.setAttribute("aria-label", label);
    spark.setAttribute("data-points", String(history.length));
  }

  // model_status / overall_status of service/report.py, on the cells' statuses
  function modelStatus(all) {
    // Unsupported providers are never checked: left out, and alone they make "degraded".
    const statuses = all.filter((s) => s !== "unsupported");
    if (!statuses.length) return all.length ? "degraded" : "unknown";
    if (statuses.every((s) => s === "healthy")) return "healthy";
    if (statuses.some((s) => s === "healthy" || s === "degraded")) return "degraded";
    if (statuses.every((s) => s === "unknown")) return "unknown";
    return "unhealthy";
  }

  function overallStatus(statuses) {
    if (!statuses.length) return "unknown";
    if (statuses.every((s) => s === "healthy")) return "healthy";
    if (statuses.every((s) => s === "unhealthy")) return "unhealthy";
    if (statuses.every((s) => s === "unknown")) return "unknown";
    return "degraded";
  }

  function updateModel(model) {
    const row = state.rows.get(model);
    if (!row) return;
    const statuses = [...state.cells.values()].filter((c) => c.model === model).map((c) => c.status);
    const status = modelStatus(statuses);
    row.tr.setAttribute("data-status", status);
    const healthy = statuses.filter((s) => s === "healthy").length;
    row.statusText.textContent = `${status} · ${healthy}/${statuses.length} healthy`;
  }

  function refreshOverall() {
    const models = [...state.rows.keys()].map((m) => state.rows.get(m).tr.getAttribute("data-status"));
    setOverall(overallStatus(models));
    const healthy = models.filter((s) => s === "healthy").length;
    $("meta-models").textContent = `${healthy}/${models.length}`;
  }

  function setOverall(status) {
    const badge = $("overall");
    const value = known(status === "unhealthy" || status === "degraded" || status === "healthy" ? status : "unknown");
    badge.setAttribute("data-status", value);
    badge.querySelector(".label").textContent = `overall: ${value}`;
  }

  // -- the initial report ---------------------------------------------------

  async function loadReport(gen) {
    const response = await api("/v1/health/?details=true");
    if (gen !== state.generation) return false;
    if (response.status !== 200 && response.status !== 503) {
      showError(`GET /v1/health/ answered HTTP ${response.status}: ${await errorText(response)}`);
      return false;
    }
    const report = await response.json();
    if (gen !== state.generation) return false;
    const details = report.details || {};
    for (const [model, summary] of Object.entries(report.models || {})) {
      ensureRow(model);
      for (const [provider, status] of Object.entries(summary.providers || {})) {
        const cell = ensureCell(model, provider);
        setCellStatus(cell, status);
        const detail = (details[model] || {})[provider];
        if (detail) setCellDetail(cell, detail);
      }
      updateModel(model);
    }
    if (!state.rows.size) $("grid-empty").hidden = false;
    refreshOverall();
    setOverall(report.status);
    $("meta-exec").textContent = formatSeconds(report.execution_time);
    const source = report.source || "live";
    state.background = source === "background" ? true : state.background;
    $("meta-source").textContent = `${source}${report.concurrent ? " · concurrent" : " · sequential"}`;
    $("meta-last-run").textContent = formatTime(report.timestamp);
    return true;
  }

  async function loadHistory(gen) {
    const response = await api("/v1/health/history");
    if (gen !== state.generation) return;
    if (response.status === 404) {
      state.background = false; // background checks off: the stream fills the charts
      return;
    }
    if (!response.ok) {
      showError(`GET /v1/health/history answered HTTP ${response.status}: ${await errorText(response)}`);
      return;
    }
    const body = await response.json();
    if (gen !== state.generation) return;
    state.background = true;
    for (const adapter of body.adapters || []) {
      const cell = ensureCell(adapter.model, adapter.provider);
      cell.history = [];
      for (const entry of (adapter.history || []).slice(-SPARK_POINTS)) pushHistory(cell, entry);
      if (adapter.status) setCellStatus(cell, adapter.status);
      const last = (adapter.history || []).at(-1);
      if (last && !cell.node.hasAttribute("data-latency")) setCellDetail(cell, last);
    }
    refreshOverall();
  }

  // -- uptime (storage) -----------------------------------------------------

  // 99.95%: rounded down to hundredths (as the status page), so downtime never shows as 100%
  function formatPercent(ratio) {
    const hundredths = Math.floor(ratio * 10000 + 1e-6);
    if (hundredths >= 10000) return ratio >= 1 ? "100%" : "99.99%";
    return `${(Math.max(hundredths, 0) / 100).toFixed(2)}%`;
  }

  function setCellUptime(cell, entry) {
    const ratio = entry.uptime;
    if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) {
      cell.uptime.textContent = "";
      cell.uptime.removeAttribute("data-uptime");
      cell.uptime.removeAttribute("title");
      return;
    }
    cell.uptime.textContent = `${formatPercent(ratio)} (${UPTIME_WINDOW})`;
    cell.uptime.setAttribute("data-uptime", String(ratio));
    const covered = Number.isFinite(entry.coverage) ? `; checks covered ${formatPercent(entry.coverage)} of it` : "";
    cell.uptime.setAttribute("title", `Uptime over the last ${UPTIME_WINDOW}${covered}`);
  }

  // false when storage is off (404): nothing to show, and no point asking again
  async function loadUptime(gen) {
    const response = await api(`/v1/health/uptime?window=${UPTIME_WINDOW}`);
    if (gen !== state.generation) return false;
    if (response.status === 404) return false;
    if (!response.ok) {
      console.warn("router-health: uptime answered HTTP", response.status);
      return true; // failing for now (503 storage_failing): try again later
    }
    const body = await response.json();
    if (gen !== state.generation) return false;
    for (const adapter of body.adapters || []) {
      setCellUptime(ensureCell(adapter.model, adapter.provider), adapter);
    }
    return true;
  }

  async function keepUptime(gen) {
    while (gen === state.generation) {
      let again;
      try {
        again = await loadUptime(gen);
      } catch (error) {
        if (error instanceof AuthError) return;
        again = true; // a network error: try again later
      }
      if (!again) return;
      await sleep(UPTIME_REFRESH_MS);
    }
  }

  // -- the event stream -----------------------------------------------------

  function setStreamState(kind, text) {
    const node = $("stream-state");
    node.setAttribute("data-state", kind);
    node.textContent = text;
  }

  function level(status) {
    return status === "unhealthy" || status === "timeout" ? "down" : status;
  }

  const handlers = {
    hello(data) {
      state.background = Boolean(data.background);
    },
    result(data) {
      const cell = ensureCell(data.model, data.provider);
      // a repeat of a recent result, or a verdict about the caller's budget
      // or this process (not the provider): nothing new to draw
      if (data.cached || NOT_ABOUT_PROVIDER.has(data.failure)) return;
      pushHistory(cell, data);
      // With background checks the cell shows the *reported* status (after
      // hysteresis): a change of level arrives as a transition; within a
      // level the reported status follows the latest result. Without them
      // every result is the status.
      const status = known(data.status);
      if (!state.background || cell.status === "unknown" || level(status) === level(cell.status)) {
        setCellStatus(cell, status);
      }
      setCellDetail(cell, data);
      refreshOverall();
    },
    transition(data) {
      const cell = ensureCell(data.model, data.provider);
      setCellStatus(cell, data.current, { flash: true });
      if ("error" in data) {
        cell.errorLine.textContent = data.error || "";
        cell.node.title = data.error ? `${cell.provider}: ${data.error}` : `${cell.provider}: ${cell.status}`;
      }
      refreshOverall();
    },
    run(data) {
      state.runs += 1;
      if (data.adapters >= state.cells.size) setOverall(data.status);
      else refreshOverall();
      $("meta-exec").textContent = `${formatSeconds(data.execution_time)} (${data.strategy || "run"})`;
      $("meta-last-run").textContent = formatTime();
      if (!state.background) $("meta-source").textContent = `live · ${data.strategy || "run"}`;
    },
    dropped() {
      setStreamState("reconnecting", "fell behind, reconnecting…");
    },
  };

  function dispatch(kind, data, id) {
    const handler = handlers[kind];
    if (!handler) return;
    let parsed;
    try {
      parsed = JSON.parse(data);
    } catch {
      console.warn("router-health: an event that is not JSON", kind, id);
      return;
    }
    handler(parsed);
  }

  // A Server-Sent Events parser (the WHATWG rules that matter here): lines
  // end with \n, \r\n or \r; "field: value" (one optional space after the
  // colon); a line starting with ":" is a comment (the server's heartbeat);
  // a blank line dispatches the event gathered so far.
  async function readEvents(body, gen) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let kind = "", data = [], id = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || gen !== state.generation) return;
        buffer += value;
        for (;;) {
          const match = /\r\n|\n|\r/.exec(buffer);
          if (!match) break;
          // a lone \r at the end may be half of \r\n: wait for the next chunk
          if (match[0] === "\r" && match.index === buffer.length - 1) break;
          const line = buffer.slice(0, match.index);
          buffer = buffer.slice(match.index + match[0].length);
          if (line === "") {
            if (data.length) dispatch(kind || "message", data.join("\n"), id);
            kind = "";
            data = [];
            continue;
          }
          if (line.startsWith(":")) {
            state.lastHeartbeat = Date.now();
            continue;
          }
          const colon = line.indexOf(":");
          const field = colon === -1 ? line : line.slice(0, colon);
          let val = colon === -1 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "event") kind = val;
          else if (field === "data") data.push(val);
          else if (field === "id") id = val;
          else if (field === "retry" && /^\d+$/.test(val)) state.retryMs = Number(val);
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  async function runStream(gen) {
    let attempt = 0;
    while (gen === state.generation) {
      const controller = new AbortController();
      state.streamAbort = controller;
      try {
        const response = await api("/v1/health/stream", {
          headers: { Accept: "text/event-stream" },
          signal: controller.signal,
        });
        if (!response.ok || !response.body) {
          throw new Error(`HTTP ${response.status}: ${await errorText(response)}`);
        }
        if (attempt > 0 && state.background) await loadHistory(gen).catch(() => {});
        setStreamState("live", "live");
        attempt = 0;
        await readEvents(response.body, gen);
      } catch (error) {
        if (error instanceof AuthError || gen !== state.generation) return;
        console.warn("router-health: the event stream failed:", error.message);
      }
      if (gen !== state.generation) return;
      // the stream ended (server restart, dropped, network): back off and retry
      const delay = Math.min(MAX_BACKOFF_MS, state.retryMs * 2 ** attempt) * (0.8 + Math.random() * 0.4);
      attempt = Math.min(attempt + 1, 8);
      setStreamState("reconnecting", `reconnecting in ${Math.round(delay / 1000)} s…`);
      await sleep(delay);
    }
  }

  // -- concurrent vs sequential ---------------------------------------------

  function barChart(title, rows) {
    // rows: [{label, value, className}]; horizontal bars on a shared scale
    const width = 560, labelW = 140, valueW = 80, barH = 18, gap = 6, top = 24;
    const height = top + rows.length * (barH + gap);
    const max = Math.max(...rows.map((r) => r.value || 0), 1e-9);
    const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    const t = svg("title");
    t.textContent = `${title}: ${rows.map((r) => `${r.label} ${r.text}`).join(", ")}`;
    chart.append(t);
    chart.setAttribute("aria-label", t.textContent);
    const heading = svg("text", { x: 0, y: 16, class: "chart-label" });
    heading.textContent = title;
    chart.append(heading);
    rows.forEach((r, i) => {
      const y = top + i * (barH + gap);
      const label = svg("text", { x: 0, y: y + barH * 0.7, class: "chart-label" });
      label.textContent = r.label;
      const w = Math.max(1, ((r.value || 0) / max) * (width - labelW - valueW));
      const bar = svg("rect", { x: labelW, y, width: w.toFixed(1), height: barH, rx: 3, class: `bar ${r.className}`, "data-series": r.series });
      const value = svg("text", { x: labelW + w + 6, y: y + barH * 0.7, class: "chart-value" });
      value.textContent = r.text;
      chart.append(label, bar, value);
    });
    return chart;
  }

  function drawPerformance(body) {
    const m = body.performance_metrics || {};
    const chart = $("perf-chart");
    chart.replaceChildren();
    const speedup = m.speedup === null || m.speedup === undefined ? "n/a" : `${m.speedup}×`;
    const improvement = m.improvement_percent === null || m.improvement_percent === undefined ? "" : ` (${m.improvement_percent}% less time)`;
    $("perf-summary").replaceChildren(
      el("span", { id: "perf-speedup", text: `Speedup: ${speedup}${improvement}` }),
      el("span", {
        className: "muted",
        text: ` — ${m.total_adapters ?? "?"} adapters in ${m.total_models ?? "?"} models, budget ${body.timeout} s per run; ` +
          `concurrent: ${body.concurrent_status}, sequential: ${body.sequential_status}` +
          (body.agreement && body.agreement.agreed === false ? "; the two runs disagree on some adapters" : ""),
      }),
    );
    chart.append(
      barChart(
        "Wall-clock time for every adapter",
        [
          { label: "concurrent", value: m.concurrent_time, text: formatSeconds(m.concurrent_time), className: "bar-concurrent", series: "concurrent" },
          { label: "sequential", value: m.sequential_time, text: formatSeconds(m.sequential_time), className: "bar-sequential", series: "sequential" },
        ],
      ),
    );
    const breakdown = $("perf-breakdown");
    breakdown.replaceChildren();
    const tb = body.time_breakdown;
    if (tb && tb.concurrent && tb.sequential) {
      const rows = [];
      for (const strategy of ["concurrent", "sequential"]) {
        const part = tb[strategy];
        const q = (part.queue_wait_ms || {}).total ?? 0;
        const e = (part.execution_ms || {}).total ?? 0;
        rows.push({ label: `${strategy}: queued`, value: q, text: formatMs(q), className: "bar-queue", series: `${strategy}-queue` });
        rows.push({ label: `${strategy}: provider`, value: e, text: formatMs(e), className: "bar-exec", series: `${strategy}-exec` });
      }
      breakdown.append(
        barChart("Summed over probes: queued for a slot vs the provider answering", rows),
      );
    }
  }

  function setupPerformance() {
    const button = $("measure");
    button.addEventListener("click", async () => {
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      $("perf-status").textContent = "Measuring… (every adapter, twice)";
      try {
        const response = await api("/v1/health/performance");
        if (!response.ok) throw new Error(`HTTP ${response.status}: ${await errorText(response)}`);
        drawPerformance(await response.json());
        $("perf-status").textContent = `Measured at ${formatTime()}.`;
      } catch (error) {
        $("perf-status").textContent = error instanceof AuthError
          ? "The measurement needs a token (see above)."
          : `The measurement failed: ${error.message}`;
      } finally {
        button.disabled = false;
        button.removeAttribute("aria-busy");
      }
    });
  }

  // -- start ----------------------------------------------------------------

  async function start() {
    state.generation += 1;
    const gen = state.generation;
    if (state.streamAbort) state.streamAbort.abort();
    clearError();
    setStreamState("connecting", "connecting…");
    try {
      await loadReport(gen);
      if (gen !== state.generation) return;
      await loadHistory(gen);
    } catch (error) {
      if (error instanceof AuthError || gen !== state.generation) return;
      showError(`Could not load the health report: ${error.message}`);
      // the stream may still work (and retries by itself): go on
    }
    if (gen === state.generation) {
      if (state.background) keepUptime(gen); // storage keeps what background checks find
      runStream(gen);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupAuthForm();
    setupPerformance();
    start();
  });
})();
