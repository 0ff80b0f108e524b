/**
 * Flags and blocking parameters of the generated GEMM module (gpu/cpu/gemm.ts): the `flags` bits,
 * {@link GemmOptions} and their tuned defaults, and the scratch size one call needs.
 * @module
 */

/** Flag bits of the `flags` argument of the exported `gemm`. */
export const GEMM_FLAGS = {
  /** Add into C instead of overwriting it. */
  ACCUMULATE: 1,
  /** Epilogue: add `bias[i]` (the f32 at `bias + 4*i`, i the absolute row) to row i. */
  BIAS_ROW: 2,
  /** Epilogue: add `bias[j]` (the f32 at `bias + 4*j`, j the absolute column) to column j. */
  BIAS_COL: 4,
  /** Epilogue: max(x, 0) after the bias. */
  RELU: 8,
  /** Epilogue: x > 0 ? x : slope * x after the bias. */
  LEAKY_RELU: 16,
  /** Testing: always take the packed path. */
  FORCE_PACKED: 32,
  /** Testing: take the direct (unpacked) path whenever it applies (sbj = 1). */
  FORCE_DIRECT: 64,
  /** Testing: take the dot-product path whenever it applies (sap = 1 and sbp = 1). */
  FORCE_DOT: 128,
} as const;

export const ACC = GEMM_FLAGS.ACCUMULATE;
export const BIAS_ROW = GEMM_FLAGS.BIAS_ROW;
export const BIAS_COL = GEMM_FLAGS.BIAS_COL;
export const RELU = GEMM_FLAGS.RELU;
export const LEAKY = GEMM_FLAGS.LEAKY_RELU;
export const EPILOGUE = BIAS_ROW | BIAS_COL | RELU | LEAKY;

/** Blocking parameters of a generated module (the defaults are the tuned ones). */
export interface GemmOptions {
  /** Use `f32x4.relaxed_madd` (falls back to mul + add when the engine rejects it). */
  relaxed: boolean;
  /** Micro-tile rows (default 6). */
  mr?: number;
  /** Micro-tile columns, a multiple of 4 (default 8). */
  nr?: number;
  /** K block (default 256). */
  kc?: number;
  /** M block, rounded up to a multiple of mr (default 120). */
  mc?: number;
  /** N block, rounded up to a multiple of nr (default 2048). */
  nc?: number;
  /** Unrolling of the micro-kernel's k loop (default 4). */
  unroll?: number;
  /** Products with at most this many rows use the direct (or dot) path (default 8). */
  directRows?: number;
  /** Products of at most this many multiply-adds use the direct or dot path (default 2^18). */
  directWork?: number;
  /** Products with sap = sbp = 1 and at most this many columns use the dot path (default 128). */
  dotCols?: number;
  /** K block of the dot path (default 1024). */
  dotKc?: number;
  /** Minimum pages of the memory import (default 1). */
  minPages?: number;
  /** Maximum pages of the memory import (default 65536, i.e. 4 GiB). */
  maxPages?: number;
}

/** Resolved blocking parameters. */
export interface Config {
  relaxed: boolean;
  mr: number;
  nr: number;
  kc: number;
  mc: number;
  nc: number;
  unroll: number;
  directRows: number;
  directWork: number;
  dotCols: number;
  dotKc: number;
  minPages: number;
  maxPages: number;
}

const DEFAULTS = {
  mr: 6,
  nr: 8,
  kc: 256,
  mc: 120,
  nc: 2048,
  unroll: 4,
  directRows: 8,
  directWork: 256 * 1024,
  dotCols: 128,
  dotKc: 1024,
  minPages: 1,
  maxPages: 65536,
};

export function resolve(opts: GemmOptions): Config {
  const mr = opts.mr ?? DEFAULTS.mr;
  const nr = opts.nr ?? DEFAULTS.nr;
  if (!(mr >= 1 && mr <= 8) || nr % 4 !== 0 || nr < 4 || nr > 16) {
    throw new RangeError(`gemm: unsupported micro-tile ${mr}x${nr}`);
  }
  const kc = opts.kc ?? DEFAULTS.kc;
  const mc = Math.ceil((opts.mc ?? DEFAULTS.mc) / mr) * mr;
  const nc = Math.ceil((opts.nc ?? DEFAULTS.nc) / nr) * nr;
  return {
    relaxed: opts.relaxed,
    mr,
    nr,
    kc,
    mc,
    nc,
    unroll: opts.unroll ?? DEFAULTS.unroll,
    directRows: opts.directRows ?? DEFAULTS.directRows,
    directWork: opts.directWork ?? DEFAULTS.directWork,
    dotCols: opts.dotCols ?? DEFAULTS.dotCols,
    dotKc: opts.dotKc ?? DEFAULTS.dotKc,
    minPages: opts.minPages ?? DEFAULTS.minPages,
    maxPages: opts.maxPages ?? DEFAULTS.maxPages,
  };
}

/**
 * Scratch bytes one `gemm` call needs at `work` (packed B block, packed A block, one edge tile):
 * `4 * (kc*nc + mc*kc + mr*nr)` for the module's blocking. With the defaults (kc 256, nc 2048,
 * mc 120, 6 x 8 tiles) that is 2,220,224 bytes, {@link GEMM_WORK_BYTES}. Any 16-byte aligned
 * block of the shared memory not touched by other threads will do.
 */
export function gemmWorkBytes(opts: Partial<GemmOptions> = {}): number {
  const c = resolve({ relaxed: false, ...opts });
  return 4 * (c.kc * c.nc + c.mc * c.kc + c.mr * c.nr);
}

/** Scratch bytes per concurrent `gemm` call with the default blocking (see {@link gemmWorkBytes}). */
export const GEMM_WORK_BYTES: number = gemmWorkBytes();
