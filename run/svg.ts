/**
 * A small hand-written SVG line plot: named series, axes with ticks and labels, a legend, a
 * title, optional log-y. Points with a non-finite coordinate (or y <= 0 on a log axis) are skipped
 * and break the line.
 * @module
 */

/** One line of the plot. */
export interface Series {
  /** Legend label. */
  name: string;
  /** X coordinates. */
  x: ArrayLike<number>;
  /** Y coordinates, same length as `x`. */
  y: ArrayLike<number>;
}

/** Plot options. */
export interface PlotOptions {
  /** Title above the plot. */
  title?: string;
  /** X axis label. */
  xLabel?: string;
  /** Y axis label. */
  yLabel?: string;
  /** Logarithmic y axis. */
  logY?: boolean;
  /** Width in pixels (default 640). */
  width?: number;
  /** Height in pixels (default 400). */
  height?: number;
}

const COLORS = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/** Escapes text for SVG content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** About `count` round tick values (steps of 1, 2 or 5 times a power of ten) in [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function tickLabel(v: number): string {
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e5 || a < 1e-3)
    ? v.toExponential(1).replace(".0e", "e")
    : String(Number(v.toPrecision(6)));
}

function extent(values: number[], pad: number): [number, number] {
  if (!values.length) return [0, 1];
  let [lo, hi] = [values.reduce((a, b) => Math.min(a, b)), values.reduce((a, b) => Math.max(a, b))];
  if (lo === hi) [lo, hi] = [lo - 0.5, hi + 0.5];
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

/** Renders the series as a standalone SVG document. */
export function linePlot(series: Series[], opts: PlotOptions = {}): string {
  const { width: W = 640, height: H = 400, logY = false } = opts;
  const [left, right, top, bottom] = [70, 20, opts.title ? 36 : 16, 48];
  const [pw, ph] = [W - left - right, H - top - bottom];
  const fy = (y: number) => (logY ? Math.log10(y) : y);
  const ok = (x: number, y: number) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0);
  const pts = series.map((s) =>
    Array.from({ length: s.x.length }, (_, i) => [s.x[i], s.y[i]]).map(([x, y]) =>
      ok(x, y) ? [x, fy(y)] : null
    )
  );
  const valid = pts.flat().filter((p) => p !== null) as number[][];
  const [x0, x1] = extent(valid.map((p) => p[0]), 0);
  const [y0, y1] = extent(valid.map((p) => p[1]), 0.05);
  const sx = (x: number) => (left + ((x - x0) / (x1 - x0)) * pw).toFixed(1);
  const sy = (y: number) => (top + ph - ((y - y0) / (y1 - y0)) * ph).toFixed(1);
  const decades = [];
  for (let k = Math.ceil(y0); k <= y1; k++) decades.push(k);
  const every = Math.ceil(decades.length / 8);
  const yTicks = logY && decades.length >= 2
    ? decades.filter((k) => k % every === 0)
    : niceTicks(y0, y1);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  ];
  if (opts.title) {
    out.push(
      `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${
        escapeXml(opts.title)
      }</text>`,
    );
  }
  for (const t of niceTicks(x0, x1)) {
    out.push(
      `<line x1="${sx(t)}" x2="${sx(t)}" y1="${top}" y2="${top + ph}" stroke="#eee"/>`,
      `<text x="${sx(t)}" y="${top + ph + 16}" text-anchor="middle">${tickLabel(t)}</text>`,
    );
  }
  for (const t of yTicks) {
    out.push(
      `<line x1="${left}" x2="${left + pw}" y1="${sy(t)}" y2="${sy(t)}" stroke="#eee"/>`,
      `<text x="${left - 6}" y="${sy(t)}" text-anchor="end" dominant-baseline="middle">${
        tickLabel(logY ? 10 ** t : t)
      }</text>`,
    );
  }
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  if (opts.xLabel) {
    out.push(
      `<text x="${left + pw / 2}" y="${H - 10}" text-anchor="middle">${
        escapeXml(opts.xLabel)
      }</text>`,
    );
  }
  if (opts.yLabel) {
    const [cx, cy] = [16, top + ph / 2];
    out.push(
      `<text x="${cx}" y="${cy}" text-anchor="middle" transform="rotate(-90 ${cx} ${cy})">${
        escapeXml(opts.yLabel)
      }${logY ? " (log)" : ""}</text>`,
    );
  }
  pts.forEach((p, i) => {
    let d = "";
    let pen = "M";
    for (const q of p) {
      if (q) [d, pen] = [`${d}${pen}${sx(q[0])},${sy(q[1])}`, "L"];
      else pen = "M";
    }
    out.push(
      `<path class="series" data-name="${escapeXml(series[i].name)}" d="${d}" fill="none" ` +
        `stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5"/>`,
    );
  });
  const lw = 14 + 7 * Math.max(0, ...series.map((s) => s.name.length));
  out.push(
    `<g class="legend" transform="translate(${left + pw - lw - 8} ${top + 8})">`,
    `<rect width="${lw}" height="${series.length * 16 + 6}" fill="white" fill-opacity="0.8" ` +
      `stroke="#ccc"/>`,
    ...series.map((s, i) =>
      `<line x1="4" x2="14" y1="${i * 16 + 11}" y2="${i * 16 + 11}" ` +
      `stroke="${COLORS[i % COLORS.length]}" stroke-width="2"/>` +
      `<text x="18" y="${i * 16 + 15}">${escapeXml(s.name)}</text>`
    ),
    "</g>",
    "</svg>",
  );
  return out.join("\n") + "\n";
}
