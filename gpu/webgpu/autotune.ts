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
  type Rendered,
  renderMatmul,
  SCRATCH,
  setMatmulTuning,
  WAVE,
} from "./render.ts";
import {
  blockTile,
  LARGE_BLOCK,
  SMALL_BLOCK,
  TILE_128x64,
  TILE_64,
  TILE_64_8x8,
  type TileConfig,
} from "./shaders/matmul.ts";

/** Bumped whenever the kernels change so that cached choices are re-measured. */
export const TUNE_VERSION = 1;

/** A candidate must beat the deterministic choice by this fraction to replace it. */
const MIN_GAIN = 0.03;

/** One timed candidate. */
export interface TuneTiming {
  /** The candidate, as {@link describePlan} writes it. */
  name: string;
  /** The candidate. */
  plan: MatmulPlan;
  /** Milliseconds per product (NaN when it failed or was pruned). */
  ms: number;
}

/** The tuned choice of one shape class. */
export interface TuneEntry {
  /** The class key (see {@link matmulClass}). */
  shapeClass: string;
  /** The product it was measured on, e.g. "1024x1024x1024 tB". */
  measuredOn: string;
  /** The winner. */
  plan: MatmulPlan;
  /** The winner as text. */
  name: string;
  /** Milliseconds per product of the winner. */
  ms: number;
  /** The deterministic choice it replaces, and its time. */
  fallback: TuneTiming;
  /** Every candidate (empty for entries read from the cache file). */
  timings: TuneTiming[];
  /** How it was timed: "timestamp", "wall", or "cache" (read from the file). */
  method: "timestamp" | "wall" | "cache";
}

/** What the autotuner knows: for `cli.ts info --verbose` and the profiler. */
export interface TuneReport {
  /** Whether tuning runs at first use (see the module doc). */
  enabled: boolean;
  /** Why (the environment variable or the adapter class). */
  reason: string;
  /** The adapter key the cache file uses. */
  adapter: string;
  /** The cache file, or null when tuning stays in memory. */
  cacheFile: string | null;
  /** Tuned classes, in order of tuning. */
  entries: TuneEntry[];
  /** Classes waiting for the next sync point. */
  pending: string[];
}

/** Text of a plan, e.g. "tiled 64x64 bk16 4x4", "blocked 8x8 (8x8 thr) splitK 4", "simple". */
export function describePlan(p: MatmulPlan): string {
  let s: string = p.variant;
  if (p.tile) {
    const t = p.tile;
    s += ` ${t.tm}x${t.tn} bk${t.bk} ${t.rm}x${t.rn}`;
  }
  if (p.block) {
    const b = p.block;
    s += ` ${b.rows}x${4 * b.cols} (${b.wg[0]}x${b.wg[1]} thr)`;
  }
  if (p.splitK && p.splitK > 1) s += ` splitK ${p.splitK}`;
  return s;
}

function log2c(x: number): number {
  return Math.ceil(Math.log2(Math.max(1, x)));
}

/**
 * The shape class a product is tuned for: each of m, k, n rounded up to a power of two, the
 * transposes, whether it is batched, and which of m, k, n are multiples of 4 (the vec4 paths).
 */
export function matmulClass(s: MatmulSpec): string {
  const al = [s.m, s.k, s.n].map((x) => (x % 4 === 0 ? "4" : "1")).join("");
  return `${s.batch > 1 ? "b" : ""}${log2c(s.m)},${log2c(s.k)},${log2c(s.n)}|` +
    `${s.transA ? "T" : "N"}${s.transB ? "T" : "N"}|${al}`;
}

function shapeText(s: MatmulSpec): string {
  return `${s.batch > 1 ? `${s.batch}x` : ""}${s.m}x${s.k}x${s.n}${s.transA ? " tA" : ""}${
    s.transB ? " tB" : ""
  }`;
}

/** Extra tiles tried by the tuner besides the named ones. */
const EXTRA_TILES: TileConfig[] = [
  { tm: 64, tn: 128, bk: 16, rm: 8, rn: 16 },
  { tm: 128, tn: 128, bk: 8, rm: 16, rn: 8 },
  { tm: 32, tn: 64, bk: 16, rm: 4, rn: 8 },
];

/**
 * The candidates tried for `s`: the deterministic choice first, then register-blocked and tiled
 * kernels whose tile is not much larger than the product, and split-K of the best-shaped ones when
 * the output grid is small.
 */
export function matmulCandidates(s: MatmulSpec): MatmulPlan[] {
  const out: MatmulPlan[] = [defaultMatmulPlan(s)];
  const seen = new Set([JSON.stringify(out[0])]);
  const add = (p: MatmulPlan) => {
    const key = JSON.stringify(p);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(p);
    }
  };
  if (s.m * s.n <= 4096) add({ variant: "simple" });
  const fits = (tm: number, tn: number) => tm <= 2 * s.m && tn <= 2 * s.n;
  for (
    const block of [
      SMALL_BLOCK,
      LARGE_BLOCK,
      { rows: 8, cols: 1, wg: [8, 8] as [number, number] },
      { rows: 16, cols: 4, wg: [8, 8] as [number, number] },
      { rows: 8, cols: 2, wg: [16, 16] as [number, number] },
    ]
  ) {
    const [tn, tm] = blockTile(block);
    if (fits(tm, tn) || block === SMALL_BLOCK) add({ variant: "blocked", block });
  }
  for (const tile of [TILE_64, TILE_128x64, TILE_64_8x8, ...EXTRA_TILES]) {
    if (fits(tile.tm, tile.tn)) add({ variant: "tiled", tile });
  }
  // Split-K where the output grid is small: of the deterministic choice and of the 64x64 tile.
  const groups = Math.ceil(s.m / 32) * Math.ceil(s.n / 32) * s.batch;
  if (s.k >= 512 && groups < WAVE) {
    for (const parts of [2, 4, 8, 16]) {
      if (s.k / parts < 128) break;
      const base = out[0].variant === "simple"
        ? { variant: "blocked" as const, block: SMALL_BLOCK }
        : out[0];
      add({ ...base, splitK: parts });
      if (fits(64, 64)) add({ variant: "tiled", tile: TILE_64, splitK: parts });
    }
  }
  return out;
}

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

// ------------------------------------------------------------------ timing

/** A candidate prepared for timing: records its passes into a compute pass. */
interface Runner {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

function prepare(dev: GPUDevice, r: Rendered, buffers: GPUBuffer[]): Runner {
  const scratch = r.scratch
    ? dev.createBuffer({ size: Math.ceil(r.scratch / 16) * 16, usage: GPUBufferUsage.STORAGE })
    : null;
  const passes = [...(r.before ?? []), {
    code: r.code,
    grid: r.grid,
    access: r.access,
    bind: r.bind ?? r.access.map((_, i) => i),
  }].map((p) => {
    const module = dev.createShaderModule({ code: p.code });
    const pipeline = dev.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    const bg = dev.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: p.bind.map((b, i) => ({
        binding: i,
        resource: { buffer: b === SCRATCH ? scratch! : buffers[b] },
      })),
    });
    return { pipeline, bg, grid: p.grid };
  });
  return {
    encode(pass) {
      for (const p of passes) {
        pass.setPipeline(p.pipeline);
        pass.setBindGroup(0, p.bg);
        pass.dispatchWorkgroups(p.grid[0], p.grid[1], p.grid[2]);
      }
    },
    destroy() {
      scratch?.destroy();
    },
  };
}

/** Wall milliseconds of `reps` repetitions in one submit, through `onSubmittedWorkDone`. */
async function wall(dev: GPUDevice, run: Runner | null, reps: number): Promise<number> {
  const t0 = performance.now();
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (let i = 0; i < reps && run; i++) run.encode(pass);
  pass.end();
  dev.queue.submit([enc.finish()]);
  await dev.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

/** Median GPU milliseconds of `reps` repetitions, one timestamped pass each. */
async function stamped(dev: GPUDevice, run: Runner, reps: number): Promise<number> {
  const qs = dev.createQuerySet({ type: "timestamp", count: 2 * reps });
  const resolve = dev.createBuffer({
    size: 16 * reps,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = dev.createBuffer({
    size: 16 * reps,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = dev.createCommandEncoder();
  for (let i = 0; i < reps; i++) {
    const pass = enc.beginComputePass({
      timestampWrites: {
        querySet: qs,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    });
    run.encode(pass);
    pass.end();
  }
  enc.resolveQuerySet(qs, 0, 2 * reps, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * reps);
  dev.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  for (const b of [resolve, read]) b.destroy();
  qs.destroy();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const dt = Number(t[2 * i + 1] - t[2 * i]) / 1e6;
    if (dt > 0 && dt < 1e6) ms.push(dt);
  }
  if (ms.length === 0) throw new Error("no valid timestamps");
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1];
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
