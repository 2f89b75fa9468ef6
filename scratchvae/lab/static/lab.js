// scratchvae lab: the page only draws. Every number comes from the server's JSON (scratchvae's own functions).
// window.lab.timings holds, per control move, the milliseconds from the input event to the numbers on the page.
"use strict";

const DIGITS = 3;  // decimals shown for nats
const COLORS = { elbo: "#1f6fb4", kl: "#c0392b", q: "#e67e22", post: "#1f6fb4", prior: "#999", mc: "#2c3e50" };
const EST_COLORS = { "reparameterization": "#1f6fb4", "score function": "#c0392b", "score function + LOO baseline": "#e67e22" };
const CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const lab = window.lab = { timings: [], view: "decomposition", problem: null, seq: 0, done: 0, errors: [] };
const $ = (id) => document.getElementById(id);

function fmt(x, d = DIGITS) {
  if (x === null || x === undefined) return "n/a";
  const s = x.toFixed(d);
  return /^-0\.?0*$/.test(s) ? s.slice(1) : s;  // no "-0.000"
}
function fmtG(x) { return x === null ? "n/a" : (Math.abs(x) >= 1e4 || Math.abs(x) < 1e-2 ? x.toExponential(3) : x.toPrecision(4)); }

async function getJSON(path) {
  const r = await fetch(path);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function showError(e) {
  lab.errors.push(String(e));
  let p = $("error");
  if (!p) { p = document.createElement("p"); p.id = "error"; p.className = "error"; document.body.prepend(p); }
  p.textContent = "error: " + e.message;
}

// ------------------------------------------------------------------ a small plotting helper (drawing only)
function niceTicks(lo, hi, n = 6) {
  const span = hi - lo || 1, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step) out.push(Math.abs(t) < 1e-12 ? 0 : t);
  return out;
}
class Plot {
  constructor(canvas, x, y, opt = {}) {
    this.c = canvas; this.g = canvas.getContext("2d");
    this.m = Object.assign({ l: 58, r: 14, t: 26, b: 42 }, opt.margin || {});
    this.logx = !!opt.logx; this.logy = !!opt.logy; this.xticks = opt.xticks !== false;
    this.x = x; this.y = y;
    this.g.clearRect(0, 0, canvas.width, canvas.height);
  }
  tx(v) { const [a, b] = this.logx ? this.x.map(Math.log10) : this.x; v = this.logx ? Math.log10(v) : v;
    return this.m.l + (v - a) / (b - a) * (this.c.width - this.m.l - this.m.r); }
  ty(v) { const [a, b] = this.logy ? this.y.map(Math.log10) : this.y; v = this.logy ? Math.log10(v) : v;
    return this.c.height - this.m.b - (v - a) / (b - a) * (this.c.height - this.m.t - this.m.b); }
  inv(px, py) {
    const w = this.c.width - this.m.l - this.m.r, h = this.c.height - this.m.t - this.m.b;
    return [this.x[0] + (px - this.m.l) / w * (this.x[1] - this.x[0]), this.y[0] + (this.c.height - this.m.b - py) / h * (this.y[1] - this.y[0])];
  }
  axes(xlabel, ylabel, title) {
    const g = this.g, W = this.c.width, H = this.c.height, m = this.m;
    g.font = "12px sans-serif"; g.fillStyle = "#333"; g.strokeStyle = "#ddd"; g.lineWidth = 1;
    const ticks = (range, log) => log ? niceLog(range) : niceTicks(range[0], range[1]);
    g.textAlign = "center";
    for (const t of this.xticks ? ticks(this.x, this.logx) : []) {
      const p = this.tx(t); g.beginPath(); g.moveTo(p, m.t); g.lineTo(p, H - m.b); g.stroke();
      g.fillText(this.logx ? fmtPow(t) : String(+t.toFixed(6)), p, H - m.b + 15);
    }
    g.textAlign = "right";
    for (const t of ticks(this.y, this.logy)) {
      const p = this.ty(t); g.beginPath(); g.moveTo(m.l, p); g.lineTo(W - m.r, p); g.stroke();
      g.fillText(this.logy ? fmtPow(t) : String(+t.toFixed(6)), m.l - 5, p + 4);
    }
    g.strokeStyle = "#888"; g.strokeRect(m.l, m.t, W - m.l - m.r, H - m.t - m.b);
    g.textAlign = "center"; g.fillText(xlabel, m.l + (W - m.l - m.r) / 2, H - 8);
    g.save(); g.translate(13, m.t + (H - m.t - m.b) / 2); g.rotate(-Math.PI / 2); g.fillText(ylabel, 0, 0); g.restore();
    if (title) { g.font = "13px sans-serif"; g.fillText(title, W / 2, 16); }
  }
  clip() { const m = this.m; this.g.save(); this.g.beginPath();
    this.g.rect(m.l, m.t, this.c.width - m.l - m.r, this.c.height - m.t - m.b); this.g.clip(); }
  unclip() { this.g.restore(); }
  line(xs, ys, color, width = 2, dash = []) {
    const g = this.g; g.strokeStyle = color; g.lineWidth = width; g.setLineDash(dash); g.beginPath();
    xs.forEach((x, i) => (i ? g.lineTo(this.tx(x), this.ty(ys[i])) : g.moveTo(this.tx(x), this.ty(ys[i]))));
    g.stroke(); g.setLineDash([]);
  }
  poly(pts, color, width = 1.5, dash = [], fill = null) {
    const g = this.g; g.beginPath();
    pts.forEach(([x, y], i) => (i ? g.lineTo(this.tx(x), this.ty(y)) : g.moveTo(this.tx(x), this.ty(y))));
    if (fill) { g.fillStyle = fill; g.fill(); }
    g.strokeStyle = color; g.lineWidth = width; g.setLineDash(dash); g.stroke(); g.setLineDash([]);
  }
  hline(y, color, dash = [], label = "", below = false) {
    this.line(this.x, [y, y], color, 1.5, dash);
    if (label) { this.g.fillStyle = color; this.g.textAlign = "right"; this.g.font = "12px sans-serif";
      this.g.fillText(label, this.c.width - this.m.r - 4, this.ty(y) + (below ? 14 : -4)); }
  }
  vline(x, color, dash = []) { this.line([x, x], this.y, color, 1.5, dash); }
  dot(x, y, color, r = 4) { const g = this.g; g.fillStyle = color; g.beginPath(); g.arc(this.tx(x), this.ty(y), r, 0, 2 * Math.PI); g.fill(); }
  star(x, y, color, r = 8) {
    const g = this.g, cx = this.tx(x), cy = this.ty(y); g.fillStyle = color; g.strokeStyle = "#fff"; g.lineWidth = 1; g.beginPath();
    for (let i = 0; i < 10; i++) { const a = -Math.PI / 2 + i * Math.PI / 5, rr = i % 2 ? r / 2.3 : r;
      g.lineTo(cx + rr * Math.cos(a), cy + rr * Math.sin(a)); }
    g.closePath(); g.fill(); g.stroke();
  }
  errbar(x, y, e, color) { this.line([x, x], [y - e, y + e], color, 1.5); this.dot(x, y, color, 3.5); }
  legend(items, x0 = null, y0 = null) {
    const g = this.g; g.font = "12px sans-serif"; g.textAlign = "left";
    const w = 34 + Math.max(...items.map(([label]) => g.measureText(label).width));
    let y = y0 === null ? this.m.t + 14 : y0;
    const x = x0 === "right" ? this.c.width - this.m.r - w - 2 : (x0 === null ? this.m.l + 8 : x0);
    g.fillStyle = "rgba(255,255,255,0.85)"; g.fillRect(x - 4, y - 13, w, 16 * items.length + 2);
    for (const [label, color, dash] of items) {
      if (color === "star") { g.fillStyle = "#333"; g.fillText("★", x + 6, y); } else {
        g.strokeStyle = color; g.lineWidth = 2; g.setLineDash(dash || []); g.beginPath(); g.moveTo(x, y - 4); g.lineTo(x + 22, y - 4); g.stroke(); }
      g.setLineDash([]); g.fillStyle = "#333"; g.fillText(label, x + 28, y); y += 16;
    }
  }
}
function niceLog(range) { const out = []; for (let e = Math.floor(Math.log10(range[0])); e <= Math.ceil(Math.log10(range[1])); e++) {
  const v = Math.pow(10, e); if (v >= range[0] * 0.999 && v <= range[1] * 1.001) out.push(v); } return out; }
function fmtPow(v) { const e = Math.round(Math.log10(v)); return e >= 0 && e <= 4 ? String(Math.pow(10, e)) : "1e" + e; }

// ------------------------------------------------------------------ the q controls
const Q_IDS = ["m1", "m2", "v1", "v2"];
function qQuery() {
  return "model=" + $("model").value + "&" + Q_IDS.map((id) => id + "=" + $(id).value).join("&");
}
function showQ() { for (const id of Q_IDS) $(id + "-out").textContent = (+$(id).value).toFixed(2); }
function setQ(mean, logvar) {
  const clampTo = (el, v) => Math.min(+el.max, Math.max(+el.min, v));
  [$("m1").value, $("m2").value] = mean.map((v, i) => clampTo($(["m1", "m2"][i]), v));
  [$("v1").value, $("v2").value] = logvar.map((v, i) => clampTo($(["v1", "v2"][i]), v));
  showQ();
}

// One request in flight per view; a newer input while it runs is sent when it returns (the latest state wins).
const channels = {};
let decodeBusy = false, decodeNext = null;
lab.busy = () => decodeBusy || decodeNext !== null || Object.values(channels).some((c) => c.busy || c.want > 0);
function request(view, t0) {
  const ch = channels[view] || (channels[view] = { busy: false, want: 0, t0: [] });
  ch.want += 1; ch.t0.push(t0 === undefined ? performance.now() : t0);
  lab.seq += 1;
  pump(view, ch);
}
async function pump(view, ch) {
  if (ch.busy) return;
  ch.busy = true;
  while (ch.want > 0) {
    const starts = ch.t0.splice(0); ch.want = 0;
    try { await RENDER[view](); } catch (e) { showError(e); }
    const now = performance.now();
    if (ch.want === 0) for (const t of starts) lab.timings.push({ view, ms: now - t });
    lab.done += starts.length;
  }
  ch.busy = false;
  document.body.dataset.done = String(lab.done);
}

// ------------------------------------------------------------------ view: decomposition (eq.13)
async function loadProblem() {
  lab.problem = await getJSON("/api/problem?model=" + $("model").value);
  for (const [ids, key] of [[["m1", "m2"], "mean"], [["v1", "v2"], "logvar"]]) {
    for (const id of ids) [$(id).min, $(id).max] = lab.problem.ranges[key];
  }
  $("mc-l").textContent = lab.problem.mc_samples;
  $("kl-best").textContent = fmt(lab.problem.best_q.kl);
}
async function renderDecomposition() {
  if (!lab.problem || lab.problem.model !== $("model").value) await loadProblem();
  const d = await getJSON("/api/decomposition?" + qQuery());
  lab.last = d;
  $("log-px").textContent = fmt(d.log_px);
  $("elbo").textContent = fmt(d.elbo);
  $("kl").textContent = fmt(d.kl);
  $("elbo-mc").textContent = fmt(d.elbo_mc);
  $("elbo-mc-se").textContent = fmt(d.elbo_mc_se);
  drawPlane(d); drawBar(d); drawCurves(d);
}
let planePlot = null;
function drawPlane(d) {
  const P = lab.problem, p = planePlot = new Plot($("plane"), [-3.2, 3.2], [-3.2, 3.2], { margin: { l: 40, r: 12, t: 26, b: 40 } });
  p.axes("z₁", "z₂", "latent plane: p(z|x) (blue), prior (grey), q (orange)");
  p.clip();
  P.prior_contours.forEach((c) => p.poly(c, COLORS.prior, 1, [4, 4]));
  P.posterior.contours.forEach((c, i) => p.poly(c, COLORS.post, 2 - 0.4 * i, [], i === 0 ? "rgba(31,111,180,0.10)" : null));
  d.q_contours.forEach((c, i) => p.poly(c, COLORS.q, 2.4 - 0.5 * i, [], i === 0 ? "rgba(230,126,34,0.15)" : null));
  p.star(P.best_q.mean[0], P.best_q.mean[1], "#333", 9);
  p.dot(d.mean[0], d.mean[1], COLORS.q, 5);
  p.unclip();
  p.legend([["q(z|x), 1, 2, 3 s.d.", COLORS.q], ["p(z|x), 1, 2, 3 s.d.", COLORS.post], ["prior N(0, I)", COLORS.prior, [4, 4]],
    ["best diagonal q (smallest KL)", "star"]], null, 440 - 40 - 58);
}
function drawBar(d) {
  const c = $("bar"), g = c.getContext("2d"), lo = Math.floor(d.log_px - 20), top = Math.ceil(d.log_px + 2);
  const p = new Plot(c, [0, 1], [lo, top], { margin: { l: 50, r: 10, t: 26, b: 40 }, xticks: false });
  g.clearRect(0, 0, c.width, c.height);
  p.axes("", "nats", "log p(x) = ELBO + KL");
  const x0 = p.tx(0.12), x1 = p.tx(0.55), clampY = (v) => Math.max(lo, Math.min(top, v));
  const yE = p.ty(clampY(d.elbo)), yP = p.ty(d.log_px), yLo = p.ty(lo);
  g.fillStyle = COLORS.elbo; g.fillRect(x0, yE, x1 - x0, yLo - yE);
  g.fillStyle = COLORS.kl; g.fillRect(x0, yP, x1 - x0, yE - yP);
  g.strokeStyle = "#000"; g.lineWidth = 2; g.strokeRect(x0, yP, x1 - x0, yLo - yP);
  g.fillStyle = "#fff"; g.font = "12px sans-serif"; g.textAlign = "center";
  if (yLo - yE > 18) g.fillText("ELBO", (x0 + x1) / 2, Math.min(yLo - 6, yE + 16));
  if (yE - yP > 16) g.fillText("KL", (x0 + x1) / 2, (yE + yP) / 2 + 4);
  if (d.elbo < lo) { g.fillStyle = "#000"; g.fillText("ELBO below the axis", (x0 + x1) / 2, yLo - 6); }
  // the Monte Carlo ELBO and its standard error, beside the bar
  const xm = p.tx(0.78);
  p.g.strokeStyle = COLORS.mc; p.g.lineWidth = 2;
  const ym = p.ty(clampY(d.elbo_mc)), ys = Math.max(2, p.ty(clampY(d.elbo_mc - d.elbo_mc_se)) - ym);
  g.beginPath(); g.moveTo(xm, ym - ys); g.lineTo(xm, ym + ys); g.moveTo(xm - 5, ym - ys); g.lineTo(xm + 5, ym - ys);
  g.moveTo(xm - 5, ym + ys); g.lineTo(xm + 5, ym + ys); g.stroke();
  g.fillStyle = COLORS.mc; g.beginPath(); g.arc(xm, ym, 3.5, 0, 2 * Math.PI); g.fill();
  g.font = "11px sans-serif"; g.fillText("MC", xm, yLo + 14); g.fillText("± s.e.", xm, yLo + 27);
  g.fillStyle = "#000"; g.textAlign = "left"; g.fillText("log p(x)", x0, yP - 5);
}
function drawCurves(d) {
  for (const cv of d.curves) {
    const id = cv.coord === "mean" ? "curve-mean" : "curve-logvar";
    const lo = Math.min(...cv.elbo), ylo = Math.max(lo, d.log_px - 15);
    const p = new Plot($(id), [cv.grid[0], cv.grid[cv.grid.length - 1]], [ylo - 1, d.log_px + 1]);
    const name = cv.coord === "mean" ? "μ₁" : "log σ₁²";
    p.axes(name + " (the other coordinates held)", "nats", "ELBO and log p(x) as " + name + " moves");
    p.clip();
    p.hline(d.log_px, "#000", [6, 4], "log p(x)", true);
    p.line(cv.grid, cv.elbo, COLORS.elbo, 2.2);
    let best = 0; cv.kl.forEach((k, i) => { if (k < cv.kl[best]) best = i; });
    p.line([cv.grid[best], cv.grid[best]], [cv.elbo[best], d.log_px], COLORS.kl, 2);
    p.star(cv.grid[best], cv.elbo[best], "#333", 7);
    const here = cv.coord === "mean" ? d.mean[0] : d.logvar[0];
    p.vline(here, COLORS.q, [3, 3]);
    p.dot(here, d.elbo, COLORS.q, 5);
    p.unclip();
    p.legend([["ELBO (analytic)", COLORS.elbo], ["smallest KL on this line", COLORS.kl], ["current q", COLORS.q, [3, 3]]],
      null, p.m.t + 30);
  }
}

// ------------------------------------------------------------------ view: Jensen and L_K (eq.6, eq.29)
async function renderJensen() {
  const d = await getJSON("/api/jensen?" + qQuery());
  lab.lastJensen = d;
  const Ks = d.bounds.map((b) => b.K), ms = d.bounds.map((b) => b.mean), ses = d.bounds.map((b) => b.se);
  const lo = Math.min(d.elbo, ...ms.map((m, i) => m - ses[i])), hi = d.log_px;
  const pad = Math.max(0.05, (hi - lo) * 0.12);
  const p = new Plot($("jensen-plot"), [0.7, Ks[Ks.length - 1] * 1.4], [lo - pad, hi + pad], { logx: true });
  p.axes("K, importance samples (log scale)", "nats", "E[L_K] climbs from the ELBO (K = 1) to log p(x)");
  p.clip();
  p.hline(d.log_px, "#000", [6, 4], "log p(x) = " + fmt(d.log_px));
  p.hline(d.elbo, COLORS.elbo, [2, 3], "ELBO (analytic) = " + fmt(d.elbo));
  p.line(Ks, ms, COLORS.q, 1.5);
  Ks.forEach((K, i) => p.errbar(K, ms[i], ses[i], COLORS.q));
  p.unclip();
  p.legend([["L_K ± 1 s.e.", COLORS.q]], null, p.c.height - p.m.b - 12);
  const rows = d.bounds.map((b) => `<tr><th>K = ${b.K}</th><td data-k="${b.K}">${fmt(b.mean)}</td><td>± ${fmt(b.se)}</td></tr>`);
  $("jensen-table").innerHTML = `<tr><th>log p(x)</th><td id="j-log-px">${fmt(d.log_px)}</td><td></td></tr>` +
    `<tr><th>ELBO (analytic)</th><td id="j-elbo">${fmt(d.elbo)}</td><td></td></tr>` +
    `<tr><th>KL(q ‖ p(z|x))</th><td id="j-kl">${fmt(d.kl)}</td><td></td></tr>` + rows.join("");
  $("jensen-r").textContent = d.replicates;
}

// ------------------------------------------------------------------ view: the estimators (eq.25-28)
async function renderEstimators() {
  const d = await getJSON("/api/estimators?f0=" + $("f0").value);
  lab.lastEstimators = d;
  const names = Object.keys(d.table);
  for (const [id, key, what] of [["est-mu", "var_mu", "∇_μ"], ["est-v", "var_logvar", "∇_v"]]) {
    const all = names.flatMap((e) => d.table[e][key]).filter((v) => v !== null).concat(key === "var_mu" ? d.reparameterization_var_mu_exact : []);
    const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all)))), hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))));
    const p = new Plot($(id), [0.7, 1400], [lo, hi], { logx: true, logy: true });
    p.axes("L, samples per estimate", "total variance", "variance of the estimate of " + what + " E_q[f]");
    p.clip();
    if (key === "var_mu") p.line(d.L, d.reparameterization_var_mu_exact, "#000", 1, [2, 3]);
    for (const e of names) {
      const xs = [], ys = [];
      d.L.forEach((L, i) => { if (d.table[e][key][i] !== null) { xs.push(L); ys.push(d.table[e][key][i]); } });
      p.line(xs, ys, EST_COLORS[e], 2);
      xs.forEach((x, i) => p.dot(x, ys[i], EST_COLORS[e], 4));
    }
    p.unclip();
    const items = names.map((e) => [e, EST_COLORS[e]]);
    if (key === "var_mu") items.push(["exact, 4 tr(ASA)/L", "#000", [2, 3]]);
    p.legend(items, "right", p.m.t + 16);
  }
  let html = "<thead><tr><th>L</th><th>estimator</th><th>var ∇_μ</th><th>var ∇_v</th><th>|bias|/s.e.</th></tr></thead><tbody>";
  d.L.forEach((L, i) => names.forEach((e) => {
    const t = d.table[e];
    html += `<tr><td>${L}</td><th>${e}</th><td class="var-mu">${fmtG(t.var_mu[i])}</td><td>${fmtG(t.var_logvar[i])}</td>` +
      `<td>${t.bias_z[i] === null ? "n/a" : t.bias_z[i].toFixed(2)}</td></tr>`;
  }));
  $("est-table").innerHTML = html + "</tbody>";
  $("est-note").textContent = `f(z) = (z − c)ᵀ A (z − c) + f₀ with J = 3, q = N(μ, diag e^v); exact gradient ∇_μ = ` +
    `(${d.exact_mu.map((v) => v.toFixed(4)).join(", ")}), E_q[f] = ${d.E_f.toFixed(4)}. ` +
    `${d.replicates} independent estimates per L, seed ${d.seed}: the numbers examples/reparameterization.py ` +
    `--replicates ${d.replicates} prints for f₀ = 10. f₀ does not change the gradient or the reparameterization ` +
    `estimate; the score function multiplies it by its noisy score, and the baseline takes it away.`;
}

// ------------------------------------------------------------------ view: a trained model
let trained = null, scatterPlot = null;
async function renderTrained() {
  const info = await getJSON("/api/info");
  $("trained-missing").hidden = info.trained; $("trained-body").hidden = !info.trained;
  if (!info.trained) return;
  if (!trained) trained = await getJSON("/api/trained");
  const pts = trained.points, xs = pts.map((q) => q[0]), ys = pts.map((q) => q[1]);
  const pad = (a) => { const lo = Math.min(...a), hi = Math.max(...a), m = 0.08 * (hi - lo || 1); return [lo - m, hi + m]; };
  const p = scatterPlot = new Plot($("scatter"), pad(xs), pad(ys));
  drawScatter(p);
}
function drawScatter(p, at = null) {
  p.g.clearRect(0, 0, p.c.width, p.c.height);
  const pts = trained.points;
  const ax = trained.axes.map((a) => "μ" + (a + 1));
  p.axes(ax[0] + (trained.J > 2 ? " (active unit)" : ""), (ax[1] || "") + (trained.J > 2 ? " (active unit)" : ""),
    "test images' encoder means; the pointer decodes");
  p.clip();
  pts.forEach((q, i) => p.dot(q[0], q[1], trained.labels ? CLASS_COLORS[trained.labels[i] % 10] : "#1f77b4", 2.6));
  if (at) { p.line([at[0], at[0]], p.y, "#000", 1, [3, 3]); p.line(p.x, [at[1], at[1]], "#000", 1, [3, 3]); p.dot(at[0], at[1], "#000", 4); }
  p.unclip();
  $("scatter").dataset.points = String(pts.length);
  const names = trained.class_names || [...new Set(trained.labels || [])].map(String);
  $("legend").innerHTML = trained.labels ? names.map((n, k) => `<span><i style="background:${CLASS_COLORS[k % 10]}"></i>${n}</span>`).join("") : "";
  $("trained-info").textContent = `${trained.source}. ` + (trained.J > 2 ?
    `The plane of the two most active units (largest A_u of eq.45: ${trained.activity.map((a) => a.toFixed(3)).join(", ")}); ` +
    `the other coordinates of z are held at the mean of the encoder means.` : "The latent plane itself.");
}
async function decodeAt(a, b, t0) {
  const d = await getJSON(`/api/decode?a=${a}&b=${b}`);
  const [h, w] = d.image_shape, c = $("image"), g = c.getContext("2d"), s = Math.floor(Math.min(c.width / w, c.height / h));
  g.clearRect(0, 0, c.width, c.height);
  for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
    const v = Math.round(255 * Math.min(1, Math.max(0, d.image[i * w + j])));
    g.fillStyle = `rgb(${v},${v},${v})`; g.fillRect(j * s, i * s, s, s);
  }
  c.dataset.z = JSON.stringify(d.z); c.dataset.cell = String(s);
  drawScatter(scatterPlot, d.plane);
  $("trained-z").textContent = "z = (" + d.z.map((v) => v.toFixed(2)).join(", ") + ")  →  E[x | z]";
  if (t0 !== undefined) lab.timings.push({ view: "trained", ms: performance.now() - t0 });
  lab.done += 1; document.body.dataset.done = String(lab.done);
}
async function pumpDecode() {
  if (decodeBusy) return;
  decodeBusy = true;
  while (decodeNext) { const [a, b, t0] = decodeNext; decodeNext = null; try { await decodeAt(a, b, t0); } catch (e) { showError(e); } }
  decodeBusy = false;
}

// ------------------------------------------------------------------ wiring
const RENDER = { decomposition: renderDecomposition, jensen: renderJensen, estimators: renderEstimators, trained: renderTrained };
function show(view) {
  lab.view = view;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === view));
  document.querySelectorAll(".view").forEach((s) => (s.hidden = s.id !== "view-" + view));
  $("q-panel").hidden = !(view === "decomposition" || view === "jensen");
  request(view);
}
document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
for (const id of Q_IDS) $(id).addEventListener("input", (ev) => { showQ(); request(lab.view, ev.timeStamp); });
$("model").addEventListener("change", (ev) => request(lab.view, ev.timeStamp));
$("q-prior").addEventListener("click", (ev) => { setQ([0, 0], [0, 0]); request(lab.view, ev.timeStamp); });
$("q-best").addEventListener("click", async (ev) => {
  if (!lab.problem || lab.problem.model !== $("model").value) await loadProblem();
  setQ(lab.problem.best_q.mean, lab.problem.best_q.logvar); request(lab.view, ev.timeStamp);
});
$("f0").addEventListener("input", (ev) => { $("f0-out").textContent = (+$("f0").value).toFixed(1); request("estimators", ev.timeStamp); });
let dragging = false;
function dragTo(ev) {
  if (!planePlot) return;
  const r = $("plane").getBoundingClientRect(), [a, b] = planePlot.inv(ev.clientX - r.left, ev.clientY - r.top);
  setQ([a, b], [+$("v1").value, +$("v2").value]);
  request("decomposition", ev.timeStamp);
}
$("plane").addEventListener("pointerdown", (ev) => { dragging = true; $("plane").setPointerCapture(ev.pointerId); dragTo(ev); });
$("plane").addEventListener("pointermove", (ev) => { if (dragging) dragTo(ev); });
$("plane").addEventListener("pointerup", () => { dragging = false; });
$("scatter").addEventListener("pointermove", (ev) => {
  if (!scatterPlot) return;
  const r = $("scatter").getBoundingClientRect(), [a, b] = scatterPlot.inv(ev.clientX - r.left, ev.clientY - r.top);
  decodeNext = [a, b, ev.timeStamp]; pumpDecode();
});
showQ(); $("f0-out").textContent = (+$("f0").value).toFixed(1);
const start = new URLSearchParams(location.search).get("view");
show(RENDER[start] ? start : "decomposition");
