"use strict";
// The page's wiring: frames from the server's WebSocket (streaming/webview.py), drawn with
// Tonemap, the controls, the pointer's radiance, the histogram and the stats.
const viewer = (() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("frame"), ctx = canvas.getContext("2d");
  const auto = new Tonemap.AutoExposure();
  const HISTORY_S = 60, BINS = 64, MAX_ZOOM = 4;
  const state = { frame: null, lockedKey: null, stats: [], shown: 0, received: 0 };

  // float16 -> float32 by table: every browser has Float32Array, not all have Float16Array.
  const HALF = (() => {
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
      t[h] = sign * (exp === 0 ? frac * 2 ** -24 : exp === 31 ? (frac ? NaN : Infinity)
        : (1 + frac / 1024) * 2 ** (exp - 15));
    }
    return t;
  })();

  function decode(buffer) {
    const headLength = new DataView(buffer).getUint32(0, true);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headLength)));
    const n = header.height * header.width, offset = 4 + headLength;
    let pixels;
    if (header.dtype === "float16") {
      const half = new Uint16Array(buffer, offset, n);
      pixels = new Float32Array(n);
      for (let i = 0; i < n; i++) pixels[i] = HALF[half[i]];
    } else {
      pixels = new Float32Array(buffer, offset, n);
    }
    return { header, pixels };
  }

  function settings() {
    return { stops: Number($("stops").value), curve: $("curve").value, falseColour: $("false-colour").checked };
  }

  function keyStops() { return $("auto").checked ? auto.key : state.lockedKey; }

  function draw() {
    const f = state.frame;
    if (!f) return;
    const { width: w, height: h } = f.header;
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w; canvas.height = h;
      canvas.style.maxWidth = `${w * MAX_ZOOM}px`;  // a small sensor's pixels stay pixels, not blotches
    }
    const start = performance.now();
    const s = settings(), k = keyStops() ?? 0;
    const image = ctx.createImageData(w, h), out = image.data;
    for (let i = 0, j = 0; i < f.pixels.length; i++, j += 4) {
      const [r, g, b] = Tonemap.pixel(f.pixels[i], k, s.stops, s.curve, s.falseColour);
      out[j] = r; out[j + 1] = g; out[j + 2] = b; out[j + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    drawHistogram(f.pixels, k - s.stops);
    const hd = f.header;
    $("frame-info").textContent = `frame ${hd.seq}, t ${(hd.t_end_us / 1e6).toFixed(3)} s, latency ` +
      `${hd.latency_ms.toFixed(0)} ms, ${w}x${h} ${hd.dtype}; shown ${state.shown} of ${state.received}, ` +
      `drawn in ${(performance.now() - start).toFixed(0)} ms`;
  }

  // log10 radiance; the mark is mid-grey as exposed now
  function drawHistogram(pixels, greyStops) {
    const c = $("histogram"), g = c.getContext("2d");
    const logs = [];
    const step = Math.max(1, Math.floor(pixels.length / 16384));
    for (let i = 0; i < pixels.length; i += step) {
      if (Number.isFinite(pixels[i])) logs.push(Tonemap.stopsOf(pixels[i]) * Math.LOG10E / Math.LOG2E);
    }
    g.clearRect(0, 0, c.width, c.height);
    if (!logs.length) return;
    let lo = Infinity, hi = -Infinity;
    for (const v of logs) { if (v < lo) lo = v; if (v > hi) hi = v; }
    hi = Math.max(hi, lo + 1e-3);
    const counts = new Array(BINS).fill(0);
    for (const v of logs) counts[Math.min(BINS - 1, Math.floor((v - lo) / (hi - lo) * BINS))]++;
    const top = Math.max(...counts), bw = c.width / BINS, axis = 14;
    g.fillStyle = "#9ab";
    counts.forEach((n, b) => {
      const bh = (n / top) * (c.height - axis);
      g.fillRect(b * bw, c.height - axis - bh, bw - 1, bh);
    });
    const mark = ((greyStops * Math.LOG10E / Math.LOG2E) - lo) / (hi - lo) * c.width;
    g.fillStyle = "#fd5";
    g.fillRect(mark - 1, 0, 2, c.height - axis);
    g.fillStyle = "#ddd";
    g.font = "11px sans-serif";
    g.fillText(lo.toFixed(1), 2, c.height - 2);
    g.textAlign = "right";
    g.fillText(hi.toFixed(1), c.width - 2, c.height - 2);
    g.textAlign = "left";
  }

  function drawLegend() {
    const c = $("legend"), g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    if (!$("false-colour").checked) return;
    for (let x = 0; x < c.width; x++) {
      const [r, gr, b] = Tonemap.turbo(x / (c.width - 1)).map((v) => Math.round(255 * Math.min(1, Math.max(0, v))));
      g.fillStyle = `rgb(${r},${gr},${b})`;
      g.fillRect(x, 0, 1, 14);
    }
    g.fillStyle = "#ddd";
    g.font = "11px sans-serif";
    const half = Tonemap.FALSE_STOPS / 2;
    g.fillText(`-${half}`, 0, 26);
    g.textAlign = "center";
    g.fillText("0 stops", c.width / 2, 26);
    g.textAlign = "right";
    g.fillText(`+${half}`, c.width, 26);
    g.textAlign = "left";
  }

  const fmt = (v, digits = 0) => (v === null || v === undefined ? "-" : v.toFixed(digits));
  const ms = (v) => fmt(v, v !== null && v < 10 ? 1 : 0);

  function showStats(batch) {
    state.stats.push(...batch);
    const newest = state.stats[state.stats.length - 1];
    state.stats = state.stats.filter((s) => s.wall_s >= newest.wall_s - HISTORY_S);
    $("stats").textContent = `${fmt(newest.frames_per_s, 1)} frames/s | latency ${ms(newest.latency_p50_ms)} ms ` +
      `(p99 ${ms(newest.latency_p99_ms)}) | ${fmt(newest.events_per_s / 1e6, 2)} Mev/s | behind ` +
      `${ms(newest.behind_ms)} ms | merged ${newest.merged} | dropped ${newest.dropped} ` +
      `(${newest.dropped_events} events)`;
    drawPlot();
  }

  function drawPlot() {
    const c = $("plot"), g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    if (!state.stats.length) return;
    const end = state.stats[state.stats.length - 1].wall_s;
    const x = (s) => c.width * (1 - (end - s.wall_s) / HISTORY_S);
    for (const [field, colour] of [["frames_per_s", "#7bf"], ["latency_p50_ms", "#fb7"]]) {
      const points = state.stats.filter((s) => s[field] !== null);
      const top = Math.max(1e-9, ...points.map((s) => s[field]));
      g.strokeStyle = colour;
      g.beginPath();
      points.forEach((s, i) => {
        const y = c.height - 4 - (s[field] / top) * (c.height - 16);
        if (i) g.lineTo(x(s), y); else g.moveTo(x(s), y);
      });
      g.stroke();
      g.fillStyle = colour;
      g.font = "11px sans-serif";
      g.fillText(`max ${top.toFixed(top < 10 ? 1 : 0)}`, field === "frames_per_s" ? 2 : c.width / 2, 11);
    }
  }

  function showStatus(st) {
    const model = st.run?.model ?? {};
    const name = model.weights ? `${model.type} (${model.weights.split("/").pop()})` : model.type ?? "?";
    const text = {
      waiting: `waiting for a pipeline at ${st.address}`,
      live: `live: ${name} on ${st.run?.device ?? "?"}, ${st.run?.source ?? ""}` +
        (st.runs > 1 ? ` (run ${st.runs}: the pipeline restarted)` : ""),
      ended: `the pipeline ended; waiting for the next at ${st.address}`,
      gone: `the pipeline went away without its final message; waiting for the next at ${st.address}`,
    }[st.state];
    $("state").textContent = text;
    $("state").className = st.state;
  }

  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        const msg = JSON.parse(e.data);
        if (msg.type === "status") showStatus(msg); else showStats(msg.stats);
        return;
      }
      state.frame = decode(e.data);
      state.received++;
      auto.follow(state.frame.pixels, state.frame.header.t_end_us);
      // drawn at the screen's next refresh; only then is the next frame asked for, so a slow
      // page gets the newest frame when it is ready, and a hidden one (no refreshes) gets none
      requestAnimationFrame(() => {
        state.shown++;
        draw();
        if (ws.readyState === WebSocket.OPEN) ws.send("drawn");
      });
    };
    ws.onclose = () => {
      $("state").textContent = "the viewer's server is not answering; trying again";
      $("state").className = "closed";
      setTimeout(connect, 1000);
    };
  }

  canvas.addEventListener("mousemove", (e) => {
    const f = state.frame;
    if (!f) return;
    const r = canvas.getBoundingClientRect();
    const x = Math.floor((e.clientX - r.left) / r.width * f.header.width);
    const y = Math.floor((e.clientY - r.top) / r.height * f.header.height);
    if (x < 0 || y < 0 || x >= f.header.width || y >= f.header.height) return;
    const v = f.pixels[y * f.header.width + x];
    const fromGrey = Tonemap.stopsOf(v) - (keyStops() ?? 0);
    $("pointer").textContent = `(${x}, ${y}): radiance ${v.toPrecision(4)}, ` +
      `${fromGrey >= 0 ? "+" : ""}${fromGrey.toFixed(1)} stops from the scene's key`;
  });
  $("stops").addEventListener("input", () => {
    $("stops-value").textContent = `${Number($("stops").value) >= 0 ? "+" : ""}${Number($("stops").value).toFixed(1)}`;
    draw();
  });
  $("auto").addEventListener("change", () => { state.lockedKey = auto.key; draw(); });
  $("curve").addEventListener("change", draw);
  $("false-colour").addEventListener("change", () => { drawLegend(); draw(); });
  connect();
  return state;
})();
