/**
 * What matmul autotuning (gpu/webgpu/autotune.ts) measures and records: the tuning version, the
 * timing, entry and report types, plan descriptions, shape classes and each class's candidate
 * plans (variants, tiles, split-K).
 * @module
 */

import type { MatmulSpec } from "../kernel.ts";
import { defaultMatmulPlan, type MatmulPlan, WAVE } from "./render.ts";
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
export const MIN_GAIN = 0.03;

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

export function shapeText(s: MatmulSpec): string {
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
