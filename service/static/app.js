// nowcast dashboard: map of the latest observations and forecast (Leaflet, bundled),
// time slider + play, legend, data age banner, lightning toggle, point chart (canvas).
(function () {
  "use strict";

  const state = {
    frames: [],        // [{key, kind, valid_time, lead_minutes}]
    index: 0,
    playing: false,
    timer: null,
    lightning: true,   // the lightning probability layer is shown from the start
    bbox: null,
    point: null,       // [lat, lon]
    lastIndexEtag: null,
  };
  window.nowcastState = state;

  const $ = (id) => document.getElementById(id);

  const map = L.map("map", { minZoom: 3, maxZoom: 12, zoomSnap: 0.5, attributionControl: true });
  map.attributionControl.setPrefix("Leaflet");
  map.setView([47, 9], 6);
  window.nowcastMap = map;
  const rainLayer = L.tileLayer("", { opacity: 0.9, minZoom: 0, maxZoom: 12, attribution: "nowcast" });
  const lightningLayer = L.tileLayer("", { opacity: 0.9, minZoom: 0, maxZoom: 12 });
  rainLayer.addTo(map);
  lightningLayer.addTo(map);
  let outline = null;
  let marker = null;

  function fmtTime(iso) {
    const d = new Date(iso);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  async function getJSON(url) {
    const r = await fetch(url, { cache: "no-cache" });
    if (!r.ok) {
      let msg = r.status + "";
      try { msg += ": " + (await r.json()).detail; } catch (e) { /* not json */ }
      throw new Error(msg);
    }
    return r.json();
  }

  function tileUrl(layer, key) {
    return "/v1/tiles/" + layer + "/" + encodeURIComponent(key).replace("%2B", "+") + "/{z}/{x}/{y}.png";
  }

  function drawOutline(b) {
    if (outline) { outline.remove(); }
    const group = L.layerGroup();
    L.rectangle([[b[1], b[0]], [b[3], b[2]]], { color: "#495057", weight: 1, fill: false, dashArray: "4 4", interactive: false }).addTo(group);
    for (let lon = Math.floor(b[0]) - 1; lon <= Math.ceil(b[2]) + 1; lon++) {
      L.polyline([[b[1] - 2, lon], [b[3] + 2, lon]], { color: "#adb5bd", weight: 0.5, interactive: false }).addTo(group);
    }
    for (let lat = Math.floor(b[1]) - 1; lat <= Math.ceil(b[3]) + 1; lat++) {
      L.polyline([[lat, b[0] - 2], [lat, b[2] + 2]], { color: "#adb5bd", weight: 0.5, interactive: false }).addTo(group);
    }
    group.addTo(map);
    outline = group;
  }

  // coastlines and borders (GeoJSON from /v1/overlays, GSHHG data served by the API) in
  // their own pane above the radar tiles; non-interactive so clicks reach the map
  map.createPane("basemap");
  map.getPane("basemap").style.zIndex = 450;
  map.getPane("basemap").style.pointerEvents = "none";
  const OVERLAY_STYLES = {
    coastlines: { color: "#1d2330", weight: 1.2, opacity: 0.9 },
    borders: { color: "#5f3dc4", weight: 1.1, opacity: 0.85, dashArray: "5 3" },
  };
  state.overlays = {};

  async function loadOverlays() {
    let n = 0;
    for (const name of ["coastlines", "borders"]) {
      try {
        const gj = await getJSON("/v1/overlays/" + name);
        const layer = L.geoJSON(gj, {
          pane: "basemap", interactive: false, className: "overlay-" + name, style: () => OVERLAY_STYLES[name],
        }).addTo(map);
        state.overlays[name] = layer;
        n += 1;
      } catch (e) { /* the map still works without them */ }
    }
    if (n) { map.attributionControl.addAttribution("coastlines, borders: GSHHG"); }
    document.body.dataset.overlays = String(n);
  }

  function showFrame(i) {
    if (!state.frames.length) { return; }
    state.index = Math.max(0, Math.min(i, state.frames.length - 1));
    const f = state.frames[state.index];
    $("slider").value = String(state.index);
    rainLayer.setUrl(tileUrl("rain", f.key));
    lightningLayer.setUrl(tileUrl("lightning", f.key));
    const label = $("frame-label");
    label.dataset.frameKey = f.key;
    if (f.kind === "forecast") {
      label.textContent = "forecast +" + f.lead_minutes + " min, valid " + fmtTime(f.valid_time);
      label.className = "forecast";
    } else {
      label.textContent = "observed " + fmtTime(f.valid_time);
      label.className = "";
    }
  }

  async function loadFrames(keepPosition) {
    const idx = await getJSON("/v1/frames");
    const observed = idx.observed.slice(-12);
    const frames = observed.concat(idx.forecast);
    const prevKey = state.frames.length ? state.frames[state.index].key : null;
    state.frames = frames;
    $("slider").max = String(Math.max(0, frames.length - 1));
    if (!state.bbox) {
      state.bbox = idx.bbox_lonlat;
      const b = state.bbox;
      map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
      drawOutline(b);
      loadOverlays();
    }
    let i = observed.length - 1;  // the latest observation
    if (keepPosition && prevKey) {
      const j = frames.findIndex((f) => f.key === prevKey);
      if (j >= 0) { i = j; }
    }
    showFrame(Math.max(0, i));
  }

  function ageClass(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    if (seconds < 600) { return "fresh"; }
    if (seconds < 1800) { return "late"; }
    return "stale";
  }

  function fmtAge(s) {
    if (s < 120) { return Math.round(s) + " s"; }
    if (s < 7200) { return Math.round(s / 60) + " min"; }
    if (s < 172800) { return (s / 3600).toFixed(1) + " h"; }
    return Math.round(s / 86400) + " days";
  }

  async function loadStatus() {
    try {
      const st = await getJSON("/v1/status");
      const banner = $("age-banner");
      const obs = st.observations;
      if (obs && obs.last_frame) {
        banner.textContent = "data " + fmtAge(obs.age_seconds) + " old (last frame " + fmtTime(obs.last_frame) + ")";
        banner.className = "banner " + ageClass(obs.age_seconds);
      } else {
        banner.textContent = "waiting for the first observation";
        banner.className = "banner";
      }
      const parts = [];
      if (st.forecast) { parts.push("forecast " + fmtTime(st.forecast.init_time) + " by " + st.forecast.model); }
      const m = st.model;
      if (m) {
        parts.push("(model " + m.active + (m.version ? " " + m.version : "") + (m.registry_version ? ", registry champion" : "") + ")");
        const card = $("model-card");
        card.hidden = !m.card_url;
        if (m.card_url) { card.href = m.card_url; }
        const fb = $("model-fallback");
        fb.hidden = !m.fallback;
        fb.textContent = m.fallback ? "fallback: " + m.message : "";
        $("lightning-note").textContent = m.lightning_probability ? "Lightning: " + m.lightning_probability + "." : "";
      }
      $("model-text").textContent = parts.join(" ");
      document.body.dataset.model = m ? m.active : "";
    } catch (e) {
      $("age-banner").textContent = "service unavailable: " + e.message;
      $("age-banner").className = "banner stale";
    }
  }

  async function loadLegend() {
    const box = $("legend");
    box.innerHTML = "";
    for (const layer of ["rain", "lightning"]) {
      const lg = await getJSON("/v1/legend/" + layer);
      const title = document.createElement("div");
      title.className = "legend-title";
      title.textContent = lg.label;
      const row = document.createElement("div");
      row.className = "legend-row";
      row.dataset.layer = layer;
      for (const e of lg.entries) {
        const item = document.createElement("div");
        item.className = "legend-item";
        const sw = document.createElement("div");
        sw.className = "legend-swatch";
        sw.style.background = e.color;
        const lab = document.createElement("span");
        lab.textContent = e.label;
        item.appendChild(sw);
        item.appendChild(lab);
        row.appendChild(item);
      }
      box.appendChild(title);
      box.appendChild(row);
    }
  }

  // ---- point chart (canvas) ------------------------------------------------------
  function drawChart(data) {
    const canvas = $("chart");
    canvas.hidden = false;
    $("chart-hint").hidden = true;
    const dpr = window.devicePixelRatio || 1;
    const W = 360, H = 220;
    canvas.width = W * dpr; canvas.height = H * dpr;
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, W, H);
    const pad = { l: 40, r: 40, t: 18, b: 30 };
    const obs = data.observed.map((p) => ({ t: Date.parse(p.time), v: p.rain_rate }));
    const fc = data.forecast.map((p) => ({ t: Date.parse(p.valid_time), v: p.rain_rate, p: p.lightning_probability }));
    const all = obs.concat(fc);
    if (!all.length) { return; }
    const t0 = Math.min(...all.map((d) => d.t)), t1 = Math.max(...all.map((d) => d.t));
    const vmax = Math.max(1, ...all.map((d) => (d.v === null ? 0 : d.v))) * 1.1;
    const x = (t) => pad.l + (W - pad.l - pad.r) * (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5);
    const y = (v) => H - pad.b - (H - pad.t - pad.b) * (v / vmax);
    const yp = (p) => H - pad.b - (H - pad.t - pad.b) * p;
    // axes
    ctx.strokeStyle = "#adb5bd"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(pad.l, pad.t); ctx.lineTo(pad.l, H - pad.b); ctx.lineTo(W - pad.r, H - pad.b); ctx.lineTo(W - pad.r, pad.t); ctx.stroke();
    ctx.fillStyle = "#495057"; ctx.font = "10px sans-serif";
    for (let k = 0; k <= 4; k++) {
      const v = vmax * k / 4;
      ctx.fillText(v.toFixed(v < 10 ? 1 : 0), 4, y(v) + 3);
      ctx.fillText((k * 25) + "%", W - pad.r + 4, yp(k / 4) + 3);
    }
    ctx.fillText("mm/h", 4, 9);
    // time ticks every 15 min
    const q = 15 * 60 * 1000;
    for (let t = Math.ceil(t0 / q) * q; t <= t1; t += q) {
      const d = new Date(t);
      ctx.fillText(d.toISOString().slice(11, 16), x(t) - 12, H - pad.b + 12);
    }
    ctx.fillText("UTC", W - pad.r - 14, H - 6);
    // "now" line at the forecast init
    if (data.forecast_init_time) {
      const tn = Date.parse(data.forecast_init_time);
      ctx.strokeStyle = "#868e96"; ctx.setLineDash([2, 3]);
      ctx.beginPath(); ctx.moveTo(x(tn), pad.t); ctx.lineTo(x(tn), H - pad.b); ctx.stroke();
      ctx.setLineDash([]);
    }
    function line(points, color, dash, acc, isProb) {
      const yy = isProb ? yp : y;
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.setLineDash(dash);
      ctx.beginPath();
      let pen = false;
      for (const d of points) {
        const v = acc(d);
        if (v === null || v === undefined) { pen = false; continue; }
        if (!pen) { ctx.moveTo(x(d.t), yy(v)); pen = true; } else { ctx.lineTo(x(d.t), yy(v)); }
      }
      ctx.stroke(); ctx.setLineDash([]);
    }
    const rain = (d) => d.v;
    const prob = (d) => d.p;
    line(obs, "#1c7ed6", [], rain, false);
    line(fc, "#1c7ed6", [6, 4], rain, false);
    line(fc, "#e8590c", [2, 2], prob, true);
    // legend
    ctx.font = "10px sans-serif";
    ctx.fillStyle = "#1c7ed6"; ctx.fillText("rain observed / forecast (dashed)", pad.l + 4, pad.t + 8);
    ctx.fillStyle = "#e8590c"; ctx.fillText("lightning probability", pad.l + 4, pad.t + 20);
    canvas.dataset.drawn = "1";
  }

  function fillTable(data) {
    // one row per forecast lead: rain rate and lightning probability
    const table = $("point-table");
    const body = table.querySelector("tbody");
    body.innerHTML = "";
    for (const p of data.forecast) {
      const tr = document.createElement("tr");
      const cells = [
        "+" + p.lead_minutes + " min",
        new Date(p.valid_time).toISOString().slice(11, 16),
        p.rain_rate === null ? "-" : p.rain_rate.toFixed(p.rain_rate < 10 ? 1 : 0),
        p.lightning_probability === null ? "-" : (100 * p.lightning_probability).toFixed(p.lightning_probability < 0.1 ? 1 : 0),
      ];
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    table.hidden = data.forecast.length === 0;
  }

  async function loadPoint(lat, lon) {
    state.point = [lat, lon];
    if (marker) { marker.remove(); }
    marker = L.circleMarker([lat, lon], { radius: 5, color: "#212529", weight: 2, fill: false }).addTo(map);
    try {
      const data = await getJSON("/v1/point?lat=" + lat.toFixed(4) + "&lon=" + lon.toFixed(4));
      drawChart(data);
      fillTable(data);
      $("chart-caption").textContent = lat.toFixed(3) + " N, " + lon.toFixed(3) + " E" + (data.model ? " - forecast by " + data.model : "");
    } catch (e) {
      $("chart").hidden = true;
      $("point-table").hidden = true;
      $("chart-hint").hidden = false;
      $("chart-hint").textContent = e.message;
    }
  }

  // ---- controls ----------------------------------------------------------------------
  $("slider").addEventListener("input", (ev) => { stop(); showFrame(parseInt(ev.target.value, 10)); });
  $("play").addEventListener("click", () => (state.playing ? stop() : play()));
  $("lightning-toggle").addEventListener("change", (ev) => {
    state.lightning = ev.target.checked;
    if (state.lightning) { lightningLayer.addTo(map); } else { lightningLayer.remove(); }
  });
  map.on("click", (ev) => loadPoint(ev.latlng.lat, ev.latlng.lng));

  function play() {
    state.playing = true;
    $("play").innerHTML = "&#10074;&#10074;";
    state.timer = setInterval(() => showFrame((state.index + 1) % Math.max(1, state.frames.length)), 700);
  }
  function stop() {
    state.playing = false;
    $("play").innerHTML = "&#9654;";
    if (state.timer) { clearInterval(state.timer); state.timer = null; }
  }

  async function refresh() {
    await loadStatus();
    try { await loadFrames(true); } catch (e) { /* keep the old frames */ }
    if (state.point) { loadPoint(state.point[0], state.point[1]); }
  }

  (async function init() {
    loadStatus();
    try { await loadLegend(); } catch (e) { /* legend is optional */ }
    try { await loadFrames(false); } catch (e) { $("frame-label").textContent = "no frames yet: " + e.message; }
    document.body.dataset.ready = "1";
    setInterval(refresh, 30000);
  })();
})();
