// Line and scatter charts on uPlot (vendored, see vendor/README.md).

import uPlot from "./vendor/uPlot.esm.js";
import { h, num } from "./dom.js";

export const COLORS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2"];
const HEIGHT = 240;
const AXIS = { stroke: "#475569", grid: { stroke: "#e2e8f0", width: 1 }, ticks: { width: 1 } };
// Epochs are whole: no ticks between them.
const EPOCH_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

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
        { ...AXIS, label: yLabel, size: 60, values: linearLabels },
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

/**
 * One parameter against the metric: points `[[x, y], ...]` without lines. `axis` says
 * how x is laid out: "category" (a grid's or a choice's values, evenly spaced and each
 * labelled with its value), "log" (a loguniform range, ticks at powers of ten) or
 * "linear". `bounds` is the range searched, so that the axis spans what was asked for
 * rather than only what the trials drew. Every tick is labelled with its value.
 */
export function scatterChart(parent, { title, xLabel, yLabel, points, axis = "linear", bounds }) {
  const plot = frame(parent, title);
  const log = axis === "log";
  const usable = points.filter(
    ([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!log || x > 0),
  );
  const categories =
    axis === "category" ? [...new Set(usable.map(([x]) => x))].sort((a, b) => a - b) : null;
  const at = categories ? (x) => categories.indexOf(x) : (x) => x;
  const sorted = usable.map(([x, y]) => [at(x), y]).sort((a, b) => a[0] - b[0]);
  const color = COLORS[0];
  let xScale = { time: false, range: (u, min, max) => padded(min, max, false) };
  let ticks = {};
  if (categories) {
    // Half a step of room at either end, one tick per value tried.
    xScale = { time: false, range: () => [-0.5, categories.length - 0.5] };
    ticks = {
      splits: () => categories.map((_, i) => i),
      values: (u, splits) => splits.map((i) => tickText(categories[i])),
    };
  } else if (log) {
    xScale = {
      time: false,
      distr: 3,
      range: (u, min, max) => padded(bounds?.[0] ?? min, bounds?.[1] ?? max, true),
    };
    ticks = { splits: logSplits, values: (u, splits) => logLabels(splits) };
  } else if (bounds) {
    xScale.range = () => padded(bounds[0], bounds[1], false);
  }
  return mount(
    plot,
    {
      legend: { show: false },
      // Room around the points: those at the ends would otherwise sit on the frame.
      scales: { x: xScale, y: { range: (u, min, max) => padded(min, max, false) } },
      axes: [
        {
          ...AXIS,
          label: xLabel,
          splits: ticks.splits,
          // uPlot's log axes blank the labels of ticks other than 1, 2, 5 times a power
          // of ten, and a grid's values are rarely those: keep every label.
          filter: (u, splits) => splits,
          values: (u, splits) => shown(plot, (ticks.values ?? linearLabels)(u, splits)),
        },
        { ...AXIS, label: yLabel, size: 60, values: (u, splits) => linearLabels(u, splits) },
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

/** A tick's value, short: `0.001`, `64`, `1e-4`; never a dash. */
export function tickText(value, exponent = false) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "";
  const rounded = Number(value.toPrecision(4));
  const size = Math.abs(rounded);
  if (exponent || (size !== 0 && size < 1e-3) || size >= 1e6) return rounded.toExponential();
  return String(rounded);
}

function linearLabels(u, splits) {
  return splits.map((value) => tickText(value));
}

/** Powers of ten in [min, max]; with fewer than three, 2 and 5 times them as well. */
function logSplits(u, axisIndex, min, max) {
  const first = Math.floor(Math.log10(min));
  const last = Math.ceil(Math.log10(max));
  const within = (multiples) => {
    const found = [];
    for (let power = first; power <= last; power += 1) {
      for (const multiple of multiples) {
        // Parsed from text: 10 ** -4 is 0.00010000000000000002, 1e-4 is 0.0001.
        const value = Number(`${multiple}e${power}`);
        if (value >= min && value <= max) found.push(value);
      }
    }
    return found;
  };
  const powers = within([1]);
  return powers.length >= 3 ? powers : within([1, 2, 5]);
}

/** A log axis' labels: all in exponent form once one is small, so that they line up. */
function logLabels(splits) {
  const exponent = splits.some((value) => value < 0.01);
  return splits.map((value) => tickText(value, exponent));
}

/** Keep the x labels drawn on the chart's element, where a test (or a person) reads them. */
function shown(plot, labels) {
  plot.dataset.xTicks = JSON.stringify(labels);
  return labels;
}

function padded(min, max, log) {
  if (min === null || max === null) return [0, 1];
  if (log) return [min / 1.5, max * 1.5];
  const margin = (max - min || Math.abs(max) || 1) * 0.08;
  return [min - margin, max + margin];
}
