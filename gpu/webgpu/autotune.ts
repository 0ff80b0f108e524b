/**
 * Matmul autotuning: at first use of a shape class, time candidate kernels (variants, tiles,
 * split-K) on the adapter and keep the fastest, in memory and (with read/write permission) in a
 * JSON file under the user cache dir, per adapter.
 *
 * **When it runs.** `AUTOLOSS_AUTOTUNE=1` turns it on, `AUTOLOSS_AUTOTUNE=0` off. Unset, it is on
 * for hardware adapters and off for software ones (llvmpipe) and off under `deno test` (a main
 * module named `*_test.ts` / `*.test.ts`), so tests stay deterministic unless they enable it
 * (or call {@link autotuneMatmul}). When off, nothing is read from the cache and every matmul
 * uses the deterministic choice (`defaultMatmulPlan` in render.ts).
 *
 * **How.** Rendering never waits: the first use of a class renders the deterministic choice and
 * queues the class; the backend runs the queued tunings at its next `sync()` or `read()` (after
 * the awaited work), and later uses of the class render the winner (a new pipeline under a new
 * cache key). Each candidate is timed with timestamp queries where the device has them (one pass
 * per repetition, median), otherwise by wall time around one submit of several repetitions plus
 * `onSubmittedWorkDone` (which costs >= 10 ms in Deno, measured once and subtracted). A
 * candidate that fails to compile or run is skipped; if timing fails altogether the deterministic
 * choice is kept.
 *
 * **Cache file.** `$XDG_CACHE_HOME/autoloss/webgpu-tune.json` or `~/.cache/autoloss/...`, keyed by
 * adapter (vendor, architecture, description, backend, Deno version) and {@link TUNE_VERSION};
 * used only where read and write permissions for it are already granted (never prompts), else
 * tuning stays in memory.
 * @module
 */

import type { MatmulSpec } from "../kernel.ts";
import { envGet } from "../backend.ts";
import {
  defaultMatmulPlan,
  isHardwareAdapter,
  type MatmulPlan,
  renderMatmul,
  setMatmulTuning,
} from "./render.ts";
import {
  describePlan,
  matmulCandidates,
  matmulClass,
  MIN_GAIN,
  shapeText,
  TUNE_VERSION,
  type TuneEntry,
  type TuneReport,
  type TuneTiming,
} from "./autotune_plans.ts";
import { prepare, type Runner, stamped, wall } from "./autotune_timing.ts";

// The candidates and record types (autotune_plans.ts) and the timing (autotune_timing.ts) live in
// their own files; the public names of autotune_plans.ts are re-exported from here.
export {
  describePlan,
  matmulCandidates,
  matmulClass,
  TUNE_VERSION,
  type TuneEntry,
  type TuneReport,
  type TuneTiming,
} from "./autotune_plans.ts";

// ------------------------------------------------------------------ state

const memory = new Map<string, TuneEntry>();
const order: string[] = [];
const pending = new Map<string, MatmulSpec>();
let device: GPUDevice | null = null;
let adapterKey = "";
let enabledState: { on: boolean; reason: string } | null = null;
let cacheFile: string | null | undefined;
let loadedDisk = false;

/** Whether autotuning runs at first use (see the module doc), and why. */
export function autotuneEnabled(): { on: boolean; reason: string } {
  if (enabledState) return enabledState;
  const v = envGet("AUTOLOSS_AUTOTUNE");
  if (v === "1") return enabledState = { on: true, reason: "AUTOLOSS_AUTOTUNE=1" };
  if (v === "0") return enabledState = { on: false, reason: "AUTOLOSS_AUTOTUNE=0" };
  let main = "";
  try {
    main = Deno.mainModule;
  } catch {
    // no main module
  }
  if (/[._]test\.[cm]?[jt]sx?$/.test(main)) {
    return { on: false, reason: "under deno test (AUTOLOSS_AUTOTUNE=1 enables it)" };
  }
  return isHardwareAdapter()
    ? { on: true, reason: "hardware adapter (AUTOLOSS_AUTOTUNE=0 disables it)" }
    : { on: false, reason: "software adapter (AUTOLOSS_AUTOTUNE=1 enables it)" };
}

/** Overrides {@link autotuneEnabled} (tests, benchmarks); `null` returns to the environment. */
export function setAutotune(on: boolean | null): void {
  enabledState = on === null ? null : { on, reason: on ? "enabled by setAutotune" : "disabled" };
}

function lookup(s: MatmulSpec): MatmulPlan | undefined {
  const cls = matmulClass(s);
  const e = memory.get(cls);
  if (e) return e.plan;
  if (device && autotuneEnabled().on) {
    if (!loadedDisk) loadDisk();
    const d = memory.get(cls);
    if (d) return d.plan;
    if (!pending.has(cls)) pending.set(cls, { ...s });
  }
  return undefined;
}

/**
 * Connects the tuner to the backend's device (called by the WebGPU backend at creation): installs
 * the lookup render.ts consults for matmul plans.
 */
export function installAutotune(dev: GPUDevice, adapter: string): void {
  device = dev;
  adapterKey = adapter;
  setMatmulTuning(lookup);
}

/** Whether tunings are queued for the next sync point. */
export function hasPendingTunes(): boolean {
  return pending.size > 0;
}

/** Runs the queued tunings (the backend calls this at `sync()` and `read()`). */
export async function runPendingTunes(): Promise<void> {
  const jobs = [...pending.values()];
  pending.clear();
  for (const s of jobs) {
    if (!memory.has(matmulClass(s))) await autotuneMatmul(s);
  }
}

/** Forgets every tuned choice in memory (the cache file is kept). */
export function clearTuning(): void {
  memory.clear();
  order.length = 0;
  pending.clear();
  loadedDisk = false;
}

/** The tuned choices and the tuner's state, for `cli.ts info --verbose` and the profiler. */
export function tunedMatmulChoices(): TuneReport {
  const en = autotuneEnabled();
  if (device && en.on && !loadedDisk) loadDisk();
  return {
    enabled: en.on,
    reason: en.reason,
    adapter: adapterKey,
    cacheFile: cachePath(),
    entries: order.map((k) => memory.get(k)!).filter(Boolean),
    pending: [...pending.keys()],
  };
}

// ------------------------------------------------------------------ disk cache

interface CacheFile {
  version: number;
  adapters: Record<string, Record<string, { plan: MatmulPlan; ms: number; measuredOn: string }>>;
}

function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

function cachePath(): string | null {
  if (cacheFile !== undefined) return cacheFile;
  cacheFile = null;
  const env = (
    name: string,
  ) => (granted({ name: "env", variable: name }) ? envGet(name) : undefined);
  const xdg = env("XDG_CACHE_HOME");
  const home = env("HOME");
  const dir = xdg ? `${xdg}/autoloss` : home ? `${home}/.cache/autoloss` : null;
  if (!dir) return null;
  const file = `${dir}/webgpu-tune.json`;
  if (granted({ name: "read", path: file }) && granted({ name: "write", path: dir })) {
    cacheFile = file;
  }
  return cacheFile;
}

/**
 * Uses `path` as the cache file (null: memory only; undefined: the default location, where
 * permitted). For tests and tools.
 */
export function setTuneCacheFile(path: string | null | undefined): void {
  cacheFile = path;
  loadedDisk = false;
}

function readCache(): CacheFile {
  const file = cachePath();
  if (!file) return { version: TUNE_VERSION, adapters: {} };
  try {
    const data = JSON.parse(Deno.readTextFileSync(file)) as CacheFile;
    if (data.version === TUNE_VERSION && data.adapters) return data;
  } catch {
    // missing or unreadable: start over
  }
  return { version: TUNE_VERSION, adapters: {} };
}

function loadDisk(): void {
  loadedDisk = true;
  const mine = readCache().adapters[adapterKey] ?? {};
  for (const [cls, e] of Object.entries(mine)) {
    if (memory.has(cls) || !e?.plan?.variant) continue;
    memory.set(cls, {
      shapeClass: cls,
      measuredOn: e.measuredOn,
      plan: e.plan,
      name: describePlan(e.plan),
      ms: e.ms,
      fallback: { name: "", plan: e.plan, ms: NaN },
      timings: [],
      method: "cache",
    });
    order.push(cls);
  }
}

function saveDisk(e: TuneEntry): void {
  const file = cachePath();
  if (!file) return;
  try {
    const data = readCache();
    (data.adapters[adapterKey] ??= {})[e.shapeClass] = {
      plan: e.plan,
      ms: e.ms,
      measuredOn: e.measuredOn,
    };
    Deno.mkdirSync(file.slice(0, file.lastIndexOf("/")), { recursive: true });
    const tmp = `${file}.${Deno.pid}.tmp`;
    Deno.writeTextFileSync(tmp, JSON.stringify(data, null, 1));
    Deno.renameSync(tmp, file);
  } catch {
    // a read-only cache dir: keep the choice in memory
  }
}

/** Options of {@link autotuneMatmul}. */
export interface TuneOptions {
  /** Re-measure even if the class is tuned (default false). */
  force?: boolean;
  /** Candidates to time instead of {@link matmulCandidates}. */
  candidates?: MatmulPlan[];
  /** Target milliseconds of timed work per candidate (default 150). */
  budgetMs?: number;
  /** Wall-clock timing even where timestamps exist (default false; always on software adapters). */
  wallClock?: boolean;
}

/**
 * Times the candidates for `s` on the backend's device now and makes the fastest the choice of
 * its shape class (in memory, and in the cache file where permitted); returns the entry. Works
 * whether or not autotuning is enabled (an explicit call enables it for this class).
 * @throws Error when no WebGPU backend has been created.
 */
export async function autotuneMatmul(s: MatmulSpec, opts: TuneOptions = {}): Promise<TuneEntry> {
  const cls = matmulClass(s);
  const known = memory.get(cls);
  if (known && !opts.force) return known;
  const dev = device;
  if (!dev) throw new Error("autotuneMatmul: no WebGPU backend (call init first)");
  const budget = opts.budgetMs ?? 150;
  const aLen = Math.max(s.batchStrideA ? s.batch * s.batchStrideA : 0, s.m * s.k);
  const bLen = Math.max(s.batchStrideB ? s.batch * s.batchStrideB : 0, s.k * s.n);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const buffers = [aLen, bLen, s.batch * s.m * s.n].map((n) =>
    dev.createBuffer({ size: Math.max(16, Math.ceil(n / 4) * 16), usage })
  );
  // Non-zero operands (some GPUs run zeros faster).
  for (const [i, n] of [[0, aLen], [1, bLen]]) {
    const data = new Float32Array(n);
    for (let j = 0; j < n; j++) data[j] = ((j * 2654435761) % 1000) / 1000 - 0.5;
    dev.queue.writeBuffer(buffers[i], 0, data);
  }
  // Software adapters' timestamps do not track the work (llvmpipe): wall time there.
  const useStamps = !opts.wallClock && isHardwareAdapter() && dev.features.has("timestamp-query");
  let method: "timestamp" | "wall" = useStamps ? "timestamp" : "wall";
  const timings: TuneTiming[] = [];
  try {
    const base = useStamps ? 0 : Math.min(await wall(dev, null, 0), await wall(dev, null, 0));
    let bestMs = Infinity;
    const live: { t: TuneTiming; run: Runner; reps: number }[] = [];
    // One timing of `run` (ms per product, NaN on an error), the best of two when cheap.
    const measure = async (run: Runner, reps: number): Promise<number> => {
      let ms = NaN;
      dev.pushErrorScope("validation");
      try {
        if (useStamps) {
          ms = await stamped(dev, run, Math.max(3, reps));
        } else {
          ms = Math.max(0.001, ((await wall(dev, run, reps)) - base) / reps);
          if (ms * reps < budget / 2 && reps < 64) {
            ms = Math.min(ms, Math.max(0.001, ((await wall(dev, run, reps)) - base) / reps));
          }
        }
      } catch {
        ms = NaN;
      }
      return (await dev.popErrorScope()) ? NaN : ms;
    };
    try {
      for (const plan of opts.candidates ?? matmulCandidates(s)) {
        const t: TuneTiming = { name: describePlan(plan), plan, ms: NaN };
        timings.push(t);
        let run: Runner | null = null;
        // Warm-up: one run compiles, a second estimates the time (pruning candidates far behind).
        let warm = NaN;
        dev.pushErrorScope("validation");
        try {
          run = prepare(dev, renderMatmul(s, plan), buffers);
          await wall(dev, run, 1);
          warm = Math.max(0.01, (await wall(dev, run, 1)) - base);
        } catch {
          warm = NaN;
        }
        if ((await dev.popErrorScope()) || !run || !Number.isFinite(warm) || warm > 3 * bestMs) {
          run?.destroy();
          continue;
        }
        const reps = Math.max(1, Math.min(64, Math.round(budget / warm)));
        // A run longer than the budget is its own measurement (big products on slow adapters).
        t.ms = warm >= budget && !useStamps ? warm : await measure(run, reps);
        if (Number.isFinite(t.ms)) {
          bestMs = Math.min(bestMs, t.ms);
          live.push({ t, run, reps });
        } else {
          run.destroy();
        }
      }
      // Timing noise: the three fastest and the deterministic choice again, interleaved.
      const ranked = [...live].sort((x, y) => x.t.ms - y.t.ms);
      const finalists = ranked.slice(0, 3);
      const first = live.find((x) => x.t === timings[0]);
      if (first && !finalists.includes(first)) finalists.push(first);
      if (finalists.length > 1) {
        const rounds = finalists.some((f) => f.t.ms >= budget) ? 1 : 2;
        for (let round = 0; round < rounds; round++) {
          for (const f of finalists) {
            const ms = await measure(f.run, f.reps);
            if (Number.isFinite(ms)) f.t.ms = Math.min(f.t.ms, ms);
          }
        }
      }
    } finally {
      for (const x of live) x.run.destroy();
    }
  } catch {
    method = "wall";
  } finally {
    for (const b of buffers) b.destroy();
  }
  const fallback = timings[0] ??
    { name: describePlan(defaultMatmulPlan(s)), plan: defaultMatmulPlan(s), ms: NaN };
  let best = fallback;
  for (const t of timings) if (Number.isFinite(t.ms) && !(t.ms >= best.ms)) best = t;
  // Keep the deterministic choice unless another is clearly faster (timing noise).
  if (best !== fallback && best.ms > (1 - MIN_GAIN) * fallback.ms) best = fallback;
  if (!Number.isFinite(best.ms)) best = { ...fallback, plan: defaultMatmulPlan(s) };
  const entry: TuneEntry = {
    shapeClass: cls,
    measuredOn: shapeText(s),
    plan: best.plan,
    name: describePlan(best.plan),
    ms: best.ms,
    fallback,
    timings,
    method,
  };
  if (!memory.has(cls)) order.push(cls);
  memory.set(cls, entry);
  if (Number.isFinite(best.ms)) saveDisk(entry);
  return entry;
}
