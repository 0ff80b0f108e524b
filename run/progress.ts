/**
 * Progress reporting: on a terminal, a one-line bar redrawn with `\r`; elsewhere (CI logs, files),
 * plain lines at most one every `interval` seconds.
 *
 * ```ts
 * const p = new Progress({ total: 1000, label: "train" });
 * for (let s = 1; s <= 1000; s++) p.update(s, { D: 0.69, G: 1.2 });
 * p.done();
 * ```
 * @module
 */

/** Options for {@link Progress}. */
export interface ProgressOptions {
  /** Total number of steps. */
  total: number;
  /** Prefix shown before the counts, e.g. the task name. */
  label?: string;
  /** What one step is, plural, for the rate: "steps" (default), "rounds", "batches". */
  unit?: string;
  /** Step the run starts at (non-zero when resuming), for the rate. Default 0. */
  start?: number;
  /** Draw a `\r` bar (true) or plain lines (false). Default: whether stdout is a terminal. */
  tty?: boolean;
  /** Seconds between plain lines. Default 10. */
  interval?: number;
  /** Output sink. Default: stdout. */
  write?: (text: string) => void;
  /** Clock in milliseconds. Default `performance.now`. */
  now?: () => number;
}

/** Values shown after the counts: numbers, or preformatted text such as `-`. */
export type ProgressValues = Record<string, number | string>;

/** Formats seconds as `m:ss` or `h:mm:ss`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const [h, m] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60)];
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** Formats a metric with 4 significant digits. */
export function formatNumber(v: number): string {
  return Number.isInteger(v) || !Number.isFinite(v) ? String(v) : String(Number(v.toPrecision(4)));
}

/** A rate as `2.50 steps/s`, or as `57.3 s/round` when under 0.1 per second. */
export function formatRate(rate: number, unit: string, digits = 2): string {
  if (rate > 0 && rate < 0.1) return `${(1 / rate).toFixed(1)} s/${unit.replace(/s$/, "")}`;
  return `${rate.toFixed(digits)} ${unit}/s`;
}

/** A progress reporter; see the module doc. */
export class Progress {
  private readonly opts: Required<Omit<ProgressOptions, "label">> & { label: string };
  private readonly t0: number;
  private last = -Infinity;
  private drawn = false;

  /** Starts the clock. */
  constructor(opts: ProgressOptions) {
    const enc = new TextEncoder();
    this.opts = {
      label: "",
      unit: "steps",
      start: 0,
      tty: Deno.stdout.isTerminal(),
      interval: 10,
      write: (s) => void Deno.stdout.writeSync(enc.encode(s)),
      now: () => performance.now(),
      ...opts,
    };
    this.t0 = this.opts.now();
  }

  /**
   * The status text for `step`: counts, percent, rate, ETA and the given values (numbers to 4
   * significant digits; strings as given, e.g. `-` for a value not measured yet).
   */
  line(step: number, values: ProgressValues = {}): string {
    const { total, start, label, unit } = this.opts;
    const elapsed = (this.opts.now() - this.t0) / 1000;
    const rate = elapsed > 0 ? (step - start) / elapsed : 0;
    const eta = rate > 0 ? formatDuration((total - step) / rate) : "?";
    const pct = total > 0 ? ((100 * step) / total).toFixed(1) : "?";
    const kv = Object.entries(values)
      .map(([k, v]) => ` ${k}=${typeof v === "string" ? v : formatNumber(v)}`)
      .join("");
    const head = label ? `${label} ` : "";
    if (!this.opts.tty) {
      return `${head}${step}/${total} (${pct}%) ${formatRate(rate, unit)} ETA ${eta}${kv}`;
    }
    const width = 20;
    const fill = total > 0 ? Math.min(width, Math.round((width * step) / total)) : 0;
    const bar = "#".repeat(fill) + ".".repeat(width - fill);
    const tick = unit === "steps" ? "it" : unit;
    return `${head}[${bar}] ${step}/${total} ${pct}% ${formatRate(rate, tick, 1)} ETA ${eta}${kv}`;
  }

  /** Reports `step`; draws only if enough time has passed since the last draw (or `force`). */
  update(step: number, values?: ProgressValues, force = false): void {
    const now = this.opts.now();
    const gap = this.opts.tty ? 100 : this.opts.interval * 1000;
    if (!force && now - this.last < gap) return;
    this.last = now;
    this.drawn = true;
    const text = this.line(step, values);
    this.opts.write(this.opts.tty ? `\r${text}\x1b[K` : text + "\n");
  }

  /** Draws the final state and ends the line. */
  done(step: number = this.opts.total, values?: ProgressValues): void {
    this.update(step, values, true);
    if (this.opts.tty && this.drawn) this.opts.write("\n");
  }
}
