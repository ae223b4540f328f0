// Line and scatter charts on uPlot (vendored, see vendor/README.md).

import uPlot from "./vendor/uPlot.esm.js";
import { h, num } from "./dom.js";

export const COLORS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2"];
const HEIGHT = 240;
const AXIS = { stroke: "#475569", grid: { stroke: "#e2e8f0", width: 1 }, ticks: { width: 1 } };
// Epochs are whole: no ticks between them.
const EPOCH_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
// A grid's few values are the ticks; more than this and the axis picks its own.
const MAX_VALUE_TICKS = 8;

/** A chart's box in `parent`; uPlot draws into it, sized to its width. */
function frame(parent, title) {
  const plot = h("div", { class: "plot" });
  const box = h("figure", { class: "chart" }, h("figcaption", {}, title), plot);
  parent.append(box);
  return plot;
}

function mount(plot, options, data) {
  const width = Math.max(plot.clientWidth, 240);
  const chart = new uPlot({ ...options, width, height: HEIGHT }, data, plot);
  // Follow the page's width; stop once the chart has left the page.
  const observer = new ResizeObserver(() => {
    if (!plot.isConnected) {
      observer.disconnect();
      chart.destroy();
      return;
    }
    const next = Math.max(plot.clientWidth, 240);
    if (next !== chart.width) chart.setSize({ width: next, height: HEIGHT });
  });
  observer.observe(plot);
  return chart;
}

/**
 * One line per series over a shared x: `series` is `[{label, points: [[x, y], ...]}]`.
 * Missing points (a trial stopped early) leave the line short rather than at zero.
 */
export function lineChart(parent, { title, xLabel, yLabel, series }) {
  const plot = frame(parent, title);
  const xs = [...new Set(series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const columns = series.map((s) => {
    const column = new Array(xs.length).fill(null);
    for (const [x, y] of s.points) column[index.get(x)] = y ?? null;
    return column;
  });
  return mount(
    plot,
    {
      scales: { x: { time: false } },
      axes: [
        { ...AXIS, label: xLabel, incrs: EPOCH_STEPS },
        { ...AXIS, label: yLabel, size: 60, values: (u, ticks) => ticks.map(num) },
      ],
      series: [
        { label: xLabel },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          width: 2,
          points: { show: true, size: 5 },
          // The value under the cursor; nothing while the cursor is elsewhere.
          value: (u, v) => (v === null || v === undefined ? "" : num(v)),
        })),
      ],
    },
    [xs, ...columns],
  );
}

/** Points `[[x, y], ...]` without lines; `logX` for parameters searched on a log scale. */
export function scatterChart(parent, { title, xLabel, yLabel, points, logX = false }) {
  const plot = frame(parent, title);
  const sorted = points
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0))
    .sort((a, b) => a[0] - b[0]);
  const color = COLORS[0];
  const distinct = [...new Set(sorted.map(([x]) => x))];
  return mount(
    plot,
    {
      legend: { show: false },
      // Room around the points: those at the ends would otherwise sit on the frame.
      scales: {
        x: { time: false, distr: logX ? 3 : 1, range: (u, min, max) => padded(min, max, logX) },
        y: { range: (u, min, max) => padded(min, max, false) },
      },
      axes: [
        {
          ...AXIS,
          label: xLabel,
          values: (u, ticks) => ticks.map(num),
          splits: distinct.length <= MAX_VALUE_TICKS ? () => distinct : undefined,
        },
        { ...AXIS, label: yLabel, size: 60, values: (u, ticks) => ticks.map(num) },
      ],
      series: [
        { label: xLabel },
        {
          label: yLabel,
          stroke: color,
          fill: `${color}99`,
          paths: () => null,
          points: { show: true, size: 9, width: 1, stroke: color, fill: `${color}99` },
        },
      ],
    },
    [sorted.map(([x]) => x), sorted.map(([, y]) => y)],
  );
}

function padded(min, max, log) {
  if (min === null || max === null) return [0, 1];
  if (log) return [min / 1.5, max * 1.5];
  const margin = (max - min || Math.abs(max) || 1) * 0.08;
  return [min - margin, max + margin];
}
