// A small line chart on a <canvas>: no library, no network (the machine may be offline).
// drawLineChart(canvas, [{t: epochMillis, v: number, revision?}], {unit, decimals}) draws axes,
// grid, the line with a soft fill and the newest point, and a ring on every revised point
// (revision > 0). canvas.dataset.points / .revised record what was drawn; canvas.chartMarks
// holds the rings' positions (CSS pixels) for hit-testing.
"use strict";

function drawLineChart(canvas, points, options) {
  const opts = Object.assign({ unit: "%", decimals: 3 }, options || {});
  const ratio = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || canvas.width;
  const cssHeight = canvas.clientHeight || canvas.height;
  canvas.width = Math.round(cssWidth * ratio);
  canvas.height = Math.round(cssHeight * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);

  const styles = getComputedStyle(document.documentElement);
  const colour = (name, fallback) => (styles.getPropertyValue(name) || fallback).trim();
  const line = colour("--accent", "#3fb6a8");
  const grid = colour("--line", "#263140");
  const text = colour("--muted", "#8b98a5");
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = text;

  const data = points.filter((p) => Number.isFinite(p.v) && Number.isFinite(p.t));
  canvas.dataset.points = String(data.length);
  canvas.dataset.revised = "0";
  canvas.chartMarks = [];
  if (data.length === 0) {
    ctx.fillText("no data in this range", cssWidth / 2 - 50, cssHeight / 2);
    return;
  }

  const pad = { left: 64, right: 16, top: 12, bottom: 28 };
  const width = cssWidth - pad.left - pad.right;
  const height = cssHeight - pad.top - pad.bottom;
  let tMin = data[0].t, tMax = data[data.length - 1].t;
  let vMin = Math.min(...data.map((p) => p.v)), vMax = Math.max(...data.map((p) => p.v));
  if (tMax === tMin) { tMin -= 60000; tMax += 60000; }
  if (vMax === vMin) { const d = Math.abs(vMax) * 0.001 || 0.001; vMin -= d; vMax += d; }
  const margin = (vMax - vMin) * 0.1;
  vMin -= margin; vMax += margin;
  const x = (t) => pad.left + ((t - tMin) / (tMax - tMin)) * width;
  const y = (v) => pad.top + (1 - (v - vMin) / (vMax - vMin)) * height;

  // horizontal grid with value labels
  ctx.strokeStyle = grid;
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i++) {
    const v = vMin + ((vMax - vMin) * i) / 4;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(pad.left, yy); ctx.lineTo(pad.left + width, yy); ctx.stroke();
    ctx.fillText(v.toFixed(opts.decimals) + opts.unit, pad.left - 6, yy);
  }
  // time labels
  const span = tMax - tMin;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let i = 0; i <= 4; i++) {
    const t = tMin + (span * i) / 4;
    const d = new Date(t);
    const label = span > 2 * 86400000
      ? d.toISOString().slice(5, 10)
      : d.toISOString().slice(11, 16) + (span > 86400000 ? " " + d.toISOString().slice(5, 10) : "");
    ctx.fillText(label, x(t), pad.top + height + 8);
  }

  // the series: a soft area, then the line
  ctx.beginPath();
  data.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.t), y(p.v)) : ctx.lineTo(x(p.t), y(p.v))));
  ctx.lineTo(x(data[data.length - 1].t), pad.top + height);
  ctx.lineTo(x(data[0].t), pad.top + height);
  ctx.closePath();
  ctx.fillStyle = line + "22";
  ctx.fill();

  ctx.beginPath();
  data.forEach((p, i) => (i === 0 ? ctx.moveTo(x(p.t), y(p.v)) : ctx.lineTo(x(p.t), y(p.v))));
  ctx.strokeStyle = line;
  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  ctx.stroke();

  const last = data[data.length - 1];
  ctx.beginPath();
  ctx.arc(x(last.t), y(last.v), 4, 0, Math.PI * 2);
  ctx.fillStyle = line;
  ctx.fill();

  // revised points: a ring in the warning colour, so a restated value is visible at a glance
  const ring = colour("--warn", "#d29922");
  const revised = data.filter((p) => p.revision > 0);
  ctx.strokeStyle = ring;
  ctx.lineWidth = 2;
  for (const p of revised) {
    ctx.beginPath();
    ctx.arc(x(p.t), y(p.v), 6, 0, Math.PI * 2);
    ctx.stroke();
  }
  canvas.chartMarks = revised.map((p) => ({ t: p.t, x: x(p.t), y: y(p.v), revision: p.revision }));
  canvas.dataset.revised = String(revised.length);
}
