/**
 * Single-precision matrix multiply in generated WebAssembly SIMD128 (see gpu/cpu/wasm_builder.ts):
 * the CPU backend's matmul and im2col convolution kernel.
 *
 * The module imports `env.memory` (a shared `WebAssembly.Memory`) and exports one function,
 * `gemm`, over operands that live anywhere in that memory with arbitrary element strides:
 *
 * ```text
 * C[i*ldc + j] = (accumulate ? C[i*ldc + j] : 0) + sum_p A[i*sai + p*sap] * B[p*sbp + j*sbj]
 *   for i in [rowStart, rowEnd), j in [colStart, colEnd), p in [0, k)
 * ```
 *
 * then an optional fused epilogue (bias, activation). Pointers are byte addresses, strides are in
 * elements, so transposes are free: A row-major [M,K] is (sai=k, sap=1), A stored transposed
 * [K,M] is (sai=1, sap=m); B row-major [K,N] is (sbp=n, sbj=1), B stored transposed [N,K] is
 * (sbp=1, sbj=k). Several threads may run disjoint [rowStart,rowEnd) x [colStart,colEnd) blocks
 * of one product at once, each with its own scratch (`work`, {@link GEMM_WORK_BYTES} bytes).
 * See {@link GemmFn} for the exact argument list and {@link GemmKernel} for a typed wrapper.
 *
 * Three paths, chosen per call (flags can force one, for tests):
 *
 * - packed (the BLAS/BLIS scheme of Goto and van de Geijn, "Anatomy of high-performance matrix
 *   multiplication"): K is cut into blocks of KC (256), N into NC (2048), M into MC (120); each
 *   KC x NC block of B is packed into NR-wide panels ([p][NR], zero-padded), each MC x KC block
 *   of A into MR-tall panels ([p][MR]); lines contiguous in memory are copied with vector moves,
 *   lines contiguous along p (row-major A, transposed B) are transposed 4 x 4 with shuffles. An
 *   MR x NR = 6 x 8 register-blocked micro-kernel (12 f32x4 accumulators, k unrolled by 4) runs
 *   over each panel pair with `f32x4.relaxed_madd` (an FMA on x86-64 and ARM) or mul + add.
 *   Full-width tiles are stored straight into C with the epilogue (the last rows by kernels
 *   generated for 1 .. MR - 1 rows); narrower edge tiles go through a scratch tile and a scalar
 *   merge;
 * - direct, for B rows contiguous (sbj = 1) and few rows (<= 8) or little work (m n k <= 2^18):
 *   4 x 8 (and 1 x 32 for single rows) register tiles read A and B in place, no packing. This
 *   wins where each packed element would be used only a few times (matrix-vector products, an
 *   MLP at batch 32);
 * - dot, for A rows and B columns both contiguous along p (sap = sbp = 1: `x W^T`, `dY col^T`)
 *   with at most 128 columns or little work: 2 x 4 tiles of dot products vectorized along p,
 *   K blocked by 1024, reduced horizontally by shuffles (weight gradients with n = 25, n = 1
 *   matrix-vector products).
 *
 * Relaxed SIMD is used when the engine validates it ({@link relaxedSimdSupported}); results
 * then differ from the mul + add module in the last bits (one rounding per FMA instead of two).
 * @module
 */

import { type FunctionBuilder, ModuleBuilder, type ValType } from "./wasm_builder.ts";

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

const ACC = GEMM_FLAGS.ACCUMULATE;
const BIAS_ROW = GEMM_FLAGS.BIAS_ROW;
const BIAS_COL = GEMM_FLAGS.BIAS_COL;
const RELU = GEMM_FLAGS.RELU;
const LEAKY = GEMM_FLAGS.LEAKY_RELU;
const EPILOGUE = BIAS_ROW | BIAS_COL | RELU | LEAKY;

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
interface Config {
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

function resolve(opts: GemmOptions): Config {
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

// ---- codegen helpers ------------------------------------------------------------------------

/** n i32 parameter types. */
function i32s(n: number): ValType[] {
  return Array.from({ length: n }, () => "i32");
}

/** [0, 1, ..., n - 1]: parameter indices to destructure into names. */
function indices(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** `for (i = start; i < end; i += step) body()`, start/end pushed by callbacks. */
function forLoop(
  f: FunctionBuilder,
  i: number,
  start: () => void,
  end: () => void,
  step: number | (() => void),
  body: () => void,
): void {
  start();
  f.localSet(i);
  f.block((out) => {
    f.loop((top) => {
      f.localGet(i);
      end();
      f.i32GeS().brIf(out);
      body();
      f.localGet(i);
      if (typeof step === "number") f.i32Const(step);
      else step();
      f.i32Add().localSet(i);
      f.br(top);
    });
  });
}

/** Pushes min(a, b) of two i32 locals... or of pushes: a and b via callbacks (signed). */
function minI32(f: FunctionBuilder, tmpA: number, tmpB: number, a: () => void, b: () => void) {
  a();
  f.localSet(tmpA);
  b();
  f.localSet(tmpB);
  f.localGet(tmpA).localGet(tmpB).localGet(tmpA).localGet(tmpB).i32LtS().select();
}

/** local += delta (delta pushed by a callback, or a constant). */
function addTo(f: FunctionBuilder, local: number, delta: number | (() => void)): void {
  f.localGet(local);
  if (typeof delta === "number") f.i32Const(delta);
  else delta();
  f.i32Add().localSet(local);
}

/** acc = a * b + acc (a, b, acc: v128 locals). */
function fma(f: FunctionBuilder, relaxed: boolean, acc: number, a: number, b: number): void {
  if (relaxed) f.localGet(a).localGet(b).localGet(acc).f32x4RelaxedMadd();
  else f.localGet(a).localGet(b).f32x4Mul().localGet(acc).f32x4Add();
  f.localSet(acc);
}

/**
 * Stores a rows x (4*nv) tile of accumulators (`acc[r][v]`) to `c` (row stride `ldcB` bytes)
 * with the flag-selected epilogue. `rowLocal` is a scratch i32 local. Fast paths for flags = 0
 * (store) and flags = ACCUMULATE (add and store); everything else takes the general path.
 */
function emitTileStore(
  f: FunctionBuilder,
  acc: number[][],
  p: {
    c: number;
    ldcB: number;
    flags: number;
    biasRow: number;
    biasCol: number;
    slope: number;
    row: number;
  },
): void {
  const rows = acc.length;
  const nv = acc[0].length;
  const eachRow = (body: (r: number) => void) => {
    f.localGet(p.c).localSet(p.row);
    for (let r = 0; r < rows; r++) {
      body(r);
      if (r < rows - 1) addTo(f, p.row, () => f.localGet(p.ldcB));
    }
  };
  const plainStore = () =>
    eachRow((r) => {
      for (let v = 0; v < nv; v++) {
        f.localGet(p.row).localGet(acc[r][v]).v128Store({ offset: 16 * v });
      }
    });
  const accStore = () =>
    eachRow((r) => {
      for (let v = 0; v < nv; v++) {
        f.localGet(p.row);
        f.localGet(p.row).v128Load({ offset: 16 * v }).localGet(acc[r][v]).f32x4Add();
        f.v128Store({ offset: 16 * v });
      }
    });
  const general = () => {
    const slopeV = f.local("v128");
    const zero = f.local("v128"); // never written: zero
    const rb = f.local("v128");
    f.localGet(p.slope).f32x4Splat().localSet(slopeV);
    eachRow((r) => {
      // Row bias (or zero): one splat per row.
      f.localGet(p.flags).i32Const(BIAS_ROW).i32And();
      f.if(() => {
        f.localGet(p.biasRow).v128Load32Splat({ offset: 4 * r }).localSet(rb);
      });
      for (let v = 0; v < nv; v++) {
        const x = acc[r][v];
        f.localGet(p.flags).i32Const(ACC).i32And();
        f.if(() => {
          f.localGet(x).localGet(p.row).v128Load({ offset: 16 * v }).f32x4Add().localSet(x);
        });
        f.localGet(p.flags).i32Const(BIAS_ROW).i32And();
        f.if(() => {
          f.localGet(x).localGet(rb).f32x4Add().localSet(x);
        });
        f.localGet(p.flags).i32Const(BIAS_COL).i32And();
        f.if(() => {
          f.localGet(x).localGet(p.biasCol).v128Load({ offset: 16 * v }).f32x4Add().localSet(x);
        });
        f.localGet(p.flags).i32Const(RELU).i32And();
        f.if(() => {
          f.localGet(x).localGet(zero).f32x4Max().localSet(x);
        });
        f.localGet(p.flags).i32Const(LEAKY).i32And();
        f.if(() => {
          f.localGet(x).localGet(x).localGet(slopeV).f32x4Mul();
          f.localGet(x).localGet(zero).f32x4Gt().v128Bitselect().localSet(x);
        });
        f.localGet(p.row).localGet(x).v128Store({ offset: 16 * v });
      }
    });
  };
  f.localGet(p.flags);
  f.i32Eqz();
  f.if(plainStore, () => {
    f.localGet(p.flags).i32Const(ACC).i32Eq();
    f.if(accStore, general);
  });
}

/**
 * Scalar epilogue for one element: `x` (f32 local) goes to `cAddr` with the flags' accumulate,
 * bias (row bias at `biasRow`, column bias at `biasCol`) and activation. Emitted as a function.
 */
function defineEpilogueScalar(mb: ModuleBuilder): number {
  // (x f32, cAddr, flags, biasRow, biasCol, slope f32)
  const params: ValType[] = ["f32", "i32", "i32", "i32", "i32", "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [x, c, flags, br, bc, slope] = [0, 1, 2, 3, 4, 5];
    f.localGet(flags).i32Const(ACC).i32And();
    f.if(() => f.localGet(x).localGet(c).f32Load().f32Add().localSet(x));
    f.localGet(flags).i32Const(BIAS_ROW).i32And();
    f.if(() => f.localGet(x).localGet(br).f32Load().f32Add().localSet(x));
    f.localGet(flags).i32Const(BIAS_COL).i32And();
    f.if(() => f.localGet(x).localGet(bc).f32Load().f32Add().localSet(x));
    f.localGet(flags).i32Const(RELU).i32And();
    f.if(() => f.localGet(x).f32Const(0).f32Max().localSet(x));
    f.localGet(flags).i32Const(LEAKY).i32And();
    f.if(() => {
      f.localGet(x).localGet(x).localGet(slope).f32Mul();
      f.localGet(x).f32Const(0).f32Gt().select().localSet(x);
    });
    f.localGet(c).localGet(x).f32Store();
  });
}

/**
 * The micro-kernel: (pa, pb, kc, c, ldcB, flags, biasRow, biasCol, slope). `pa` is an MR x kc
 * panel ([p][MR]), `pb` a kc x NR panel ([p][NR]); the MR x NR result goes to `c`.
 */
function defineMicroKernel(mb: ModuleBuilder, cfg: Config, rows = cfg.mr): number {
  const params: ValType[] = ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [pa, pb, kc, c, ldcB, flags, biasRow, biasCol, slope] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    const { mr, nr, unroll, relaxed } = cfg;
    const nv = nr / 4;
    const acc = Array.from(
      { length: rows },
      () => Array.from({ length: nv }, () => f.local("v128")),
    );
    const bv = Array.from({ length: nv }, () => f.local("v128"));
    const av = f.local("v128");
    const n = f.local("i32");
    const row = f.local("i32");
    const step = (u: number) => {
      for (let v = 0; v < nv; v++) {
        f.localGet(pb).v128Load({ offset: 4 * (u * nr + 4 * v) }).localSet(bv[v]);
      }
      for (let r = 0; r < rows; r++) {
        f.localGet(pa).v128Load32Splat({ offset: 4 * (u * mr + r) }).localSet(av);
        for (let v = 0; v < nv; v++) fma(f, relaxed, acc[r][v], av, bv[v]);
      }
    };
    f.localGet(kc).localSet(n);
    // Unrolled main loop.
    f.block((out) => {
      f.loop((top) => {
        f.localGet(n).i32Const(unroll).i32LtS().brIf(out);
        for (let u = 0; u < unroll; u++) step(u);
        addTo(f, pa, 4 * mr * unroll);
        addTo(f, pb, 4 * nr * unroll);
        addTo(f, n, -unroll);
        f.br(top);
      });
    });
    // Remainder.
    f.block((out) => {
      f.loop((top) => {
        f.localGet(n).i32Eqz().brIf(out);
        step(0);
        addTo(f, pa, 4 * mr);
        addTo(f, pb, 4 * nr);
        addTo(f, n, -1);
        f.br(top);
      });
    });
    emitTileStore(f, acc, { c, ldcB, flags, biasRow, biasCol, slope, row });
  });
}

/**
 * Copies `width` consecutive f32 from [src] to [dst] with v128 / i64 / f32 moves.
 */
function emitCopyFloats(f: FunctionBuilder, src: number, dst: number, width: number): void {
  let o = 0;
  while (width - o >= 4) {
    f.localGet(dst).localGet(src).v128Load({ offset: 4 * o }).v128Store({ offset: 4 * o });
    o += 4;
  }
  if (width - o >= 2) {
    f.localGet(dst).localGet(src).i64Load({ offset: 4 * o }).i64Store({ offset: 4 * o });
    o += 2;
  }
  if (width - o >= 1) {
    f.localGet(dst).localGet(src).f32Load({ offset: 4 * o }).f32Store({ offset: 4 * o });
    o += 1;
  }
}

/**
 * Packs one full panel of `w` lines whose elements are contiguous along p (stepB = 4: rows of
 * a row-major A, columns of a transposed B): 4 x 4 blocks are loaded as four vectors (one per
 * line), transposed with shuffles and stored as four p-rows of the panel; a 2-line remainder
 * (w = 6) is interleaved into 64-bit pairs; leftover p (kc % 4) are copied one by one.
 */
function emitTransposePack(
  f: FunctionBuilder,
  x: { src: number; lineB: number; kc: number; dst: number; l0: number; d: number },
  w: number,
): void {
  const lp = Array.from({ length: w }, () => f.local("i32"));
  const r = Array.from({ length: 4 }, () => f.local("v128"));
  const t = Array.from({ length: 4 }, () => f.local("v128"));
  const off = f.local("i32");
  const n = f.local("i32");
  // lp[l] = src + (l0 + l) * lineB
  f.localGet(x.src).localGet(x.l0).localGet(x.lineB).i32Mul().i32Add().localSet(lp[0]);
  for (let l = 1; l < w; l++) f.localGet(lp[l - 1]).localGet(x.lineB).i32Add().localSet(lp[l]);
  f.i32Const(0).localSet(off);
  f.localGet(x.dst).localSet(x.d);
  f.localGet(x.kc).i32Const(2).i32ShrU().localSet(n);
  const load = (v: number, line: number) =>
    f.localGet(lp[line]).localGet(off).i32Add().v128Load().localSet(v);
  const shuf = (dst: number, a: number, b: number, lanes: number[]) => {
    f.localGet(a).localGet(b);
    shuffle32(f, lanes);
    f.localSet(dst);
  };
  f.block((out) => {
    f.loop((top) => {
      f.localGet(n).i32Eqz().brIf(out);
      for (let g = 0; g + 4 <= w; g += 4) {
        for (let i = 0; i < 4; i++) load(r[i], g + i);
        shuf(t[0], r[0], r[1], [0, 4, 1, 5]);
        shuf(t[1], r[0], r[1], [2, 6, 3, 7]);
        shuf(t[2], r[2], r[3], [0, 4, 1, 5]);
        shuf(t[3], r[2], r[3], [2, 6, 3, 7]);
        const rows: [number, number, number[]][] = [
          [t[0], t[2], [0, 1, 4, 5]],
          [t[0], t[2], [2, 3, 6, 7]],
          [t[1], t[3], [0, 1, 4, 5]],
          [t[1], t[3], [2, 3, 6, 7]],
        ];
        rows.forEach(([a, b, lanes], q) => {
          f.localGet(x.d).localGet(a).localGet(b);
          shuffle32(f, lanes);
          f.v128Store({ offset: 4 * (q * w + g) });
        });
      }
      const g = w - (w % 4);
      if (w % 4 === 2) {
        load(r[0], g);
        load(r[1], g + 1);
        shuf(t[0], r[0], r[1], [0, 4, 1, 5]); // p0 pair, p1 pair
        shuf(t[1], r[0], r[1], [2, 6, 3, 7]); // p2 pair, p3 pair
        for (let q = 0; q < 4; q++) {
          f.localGet(x.d).localGet(t[q >> 1]).v128Store64Lane(q & 1, { offset: 4 * (q * w + g) });
        }
      } else if (w % 4 !== 0) {
        for (let q = 0; q < 4; q++) {
          for (let l = g; l < w; l++) {
            f.localGet(x.d).localGet(lp[l]).localGet(off).i32Add().f32Load({ offset: 4 * q });
            f.f32Store({ offset: 4 * (q * w + l) });
          }
        }
      }
      addTo(f, off, 16);
      addTo(f, x.d, 16 * w);
      addTo(f, n, -1);
      f.br(top);
    });
  });
  // kc % 4 leftover p.
  f.localGet(x.kc).i32Const(3).i32And().localSet(n);
  f.block((out) => {
    f.loop((top) => {
      f.localGet(n).i32Eqz().brIf(out);
      for (let l = 0; l < w; l++) {
        f.localGet(x.d).localGet(lp[l]).localGet(off).i32Add().f32Load();
        f.f32Store({ offset: 4 * l });
      }
      addTo(f, off, 4);
      addTo(f, x.d, 4 * w);
      addTo(f, n, -1);
      f.br(top);
    });
  });
}

/**
 * Packs panels of `w` lines (rows of A, or columns of B): (src, lineB, stepB, lines, kc, dst).
 * Element (line l, p) is at src + l*lineB + p*stepB; panel q holds lines [q*w, q*w + w) as
 * [p][w], zero-padded past `lines`. When lineB = 4 (lines adjacent in memory) full panels are
 * copied with vector moves.
 */
function definePack(mb: ModuleBuilder, w: number): number {
  const params: ValType[] = ["i32", "i32", "i32", "i32", "i32", "i32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [src, lineB, stepB, lines, kc, dst] = [0, 1, 2, 3, 4, 5];
    const l0 = f.local("i32");
    const cnt = f.local("i32");
    const l = f.local("i32");
    const s = f.local("i32");
    const d = f.local("i32");
    const p = f.local("i32");
    const panelB = f.local("i32");
    const t1 = f.local("i32");
    const t2 = f.local("i32");
    f.localGet(kc).i32Const(4 * w).i32Mul().localSet(panelB);
    forLoop(f, l0, () => f.i32Const(0), () => f.localGet(lines), w, () => {
      // cnt = min(w, lines - l0)
      minI32(f, t1, t2, () => f.i32Const(w), () => f.localGet(lines).localGet(l0).i32Sub());
      f.localSet(cnt);
      f.localGet(cnt).i32Const(w).i32Eq().localGet(lineB).i32Const(4).i32Eq().i32And();
      f.if(() => {
        // Adjacent lines: copy w floats per p.
        f.localGet(src).localGet(l0).i32Const(4).i32Mul().i32Add().localSet(s);
        f.localGet(dst).localSet(d);
        forLoop(f, p, () => f.i32Const(0), () => f.localGet(kc), 1, () => {
          emitCopyFloats(f, s, d, w);
          addTo(f, s, () => f.localGet(stepB));
          addTo(f, d, 4 * w);
        });
      }, () => {
        f.localGet(cnt).i32Const(w).i32Eq().localGet(stepB).i32Const(4).i32Eq().i32And();
        f.if(() => emitTransposePack(f, { src, lineB, kc, dst, l0, d }, w), () => {
          f.localGet(cnt).i32Const(w).i32Ne();
          f.if(() => {
            f.localGet(dst).i32Const(0).localGet(panelB).memoryFill();
          });
          forLoop(f, l, () => f.i32Const(0), () => f.localGet(cnt), 1, () => {
            // s = src + (l0 + l) * lineB; d = dst + 4 l
            f.localGet(src).localGet(l0).localGet(l).i32Add().localGet(lineB).i32Mul().i32Add();
            f.localSet(s);
            f.localGet(dst).localGet(l).i32Const(4).i32Mul().i32Add().localSet(d);
            // Unrolled by 4 along p.
            f.localGet(kc).localSet(p);
            f.block((out) => {
              f.loop((top) => {
                f.localGet(p).i32Const(4).i32LtS().brIf(out);
                for (let u = 0; u < 4; u++) {
                  f.localGet(d).localGet(s).f32Load().f32Store({ offset: 4 * w * u });
                  addTo(f, s, () => f.localGet(stepB));
                }
                addTo(f, d, 16 * w);
                addTo(f, p, -4);
                f.br(top);
              });
            });
            f.block((out) => {
              f.loop((top) => {
                f.localGet(p).i32Eqz().brIf(out);
                f.localGet(d).localGet(s).f32Load().f32Store();
                addTo(f, s, () => f.localGet(stepB));
                addTo(f, d, 4 * w);
                addTo(f, p, -1);
                f.br(top);
              });
            });
          });
        });
      });
      addTo(f, dst, () => f.localGet(panelB));
    });
  });
}

/**
 * Scalar merge of an edge tile: (tmp, c, ldcB, rows, cols, flags, biasRow, biasCol, slope);
 * tmp is [MR][NR] contiguous.
 */
function defineMerge(mb: ModuleBuilder, cfg: Config, epi: number): number {
  const params: ValType[] = ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [tmp, c, ldcB, rows, cols, flags, biasRow, biasCol, slope] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    const r = f.local("i32");
    const j = f.local("i32");
    forLoop(f, r, () => f.i32Const(0), () => f.localGet(rows), 1, () => {
      forLoop(f, j, () => f.i32Const(0), () => f.localGet(cols), 1, () => {
        // x = tmp[r*NR + j]
        f.localGet(tmp).localGet(r).i32Const(cfg.nr).i32Mul().localGet(j).i32Add();
        f.i32Const(4).i32Mul().i32Add().f32Load();
        f.localGet(c).localGet(r).localGet(ldcB).i32Mul().i32Add();
        f.localGet(j).i32Const(4).i32Mul().i32Add();
        f.localGet(flags);
        f.localGet(biasRow).localGet(r).i32Const(4).i32Mul().i32Add();
        f.localGet(biasCol).localGet(j).i32Const(4).i32Mul().i32Add();
        f.localGet(slope);
        f.call(epi);
      });
    });
  });
}

/**
 * Direct tile (no packing) of `rows` x 4*nv: (a, saiB, sapB, b, sbpB, k, c, ldcB, flags,
 * biasRow, biasCol, slope). A element (r, p) at a + r*saiB + p*sapB; B row p at b + p*sbpB,
 * columns contiguous.
 */
function defineDirectTile(mb: ModuleBuilder, cfg: Config, rows: number, nv: number): number {
  const params: ValType[] = [...i32s(11), "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [a, saiB, sapB, b, sbpB, k, c, ldcB, flags, biasRow, biasCol, slope] = indices(12);
    const acc = Array.from(
      { length: rows },
      () => Array.from({ length: nv }, () => f.local("v128")),
    );
    const bv = Array.from({ length: nv }, () => f.local("v128"));
    const av = f.local("v128");
    const ap = Array.from({ length: rows }, () => f.local("i32"));
    const n = f.local("i32");
    const row = f.local("i32");
    f.localGet(a).localSet(ap[0]);
    for (let r = 1; r < rows; r++) f.localGet(ap[r - 1]).localGet(saiB).i32Add().localSet(ap[r]);
    f.localGet(k).localSet(n);
    f.block((out) => {
      f.loop((top) => {
        f.localGet(n).i32Eqz().brIf(out);
        for (let v = 0; v < nv; v++) f.localGet(b).v128Load({ offset: 16 * v }).localSet(bv[v]);
        for (let r = 0; r < rows; r++) {
          f.localGet(ap[r]).v128Load32Splat().localSet(av);
          for (let v = 0; v < nv; v++) fma(f, cfg.relaxed, acc[r][v], av, bv[v]);
          addTo(f, ap[r], () => f.localGet(sapB));
        }
        addTo(f, b, () => f.localGet(sbpB));
        addTo(f, n, -1);
        f.br(top);
      });
    });
    emitTileStore(f, acc, { c, ldcB, flags, biasRow, biasCol, slope, row });
  });
}

/** Pushes the 32-bit-lane shuffle of two v128 values (lanes 0-3 from the first, 4-7 second). */
function shuffle32(f: FunctionBuilder, lanes: readonly number[]): void {
  f.i8x16Shuffle(lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]));
}

/**
 * Dot-product tile for A rows and B columns both contiguous along p (sap = 1, sbp = 1):
 * (a, saiB, b, sbjB, k, c, ldcB, flags, biasRow, biasCol, slope). `a` is A[i, p0], `b` is
 * B[p0, j]; computes a rows x cols block (cols 4 or 1) of dot products of length k, vectorized
 * along p, then reduces horizontally.
 */
function defineDotTile(
  mb: ModuleBuilder,
  cfg: Config,
  rows: number,
  cols: number,
  epi: number,
): number {
  const params: ValType[] = [...i32s(10), "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [a, saiB, b, sbjB, k, c, ldcB, flags, biasRow, biasCol, slope] = indices(11);
    const acc = Array.from(
      { length: rows },
      () => Array.from({ length: cols }, () => f.local("v128")),
    );
    const av = Array.from({ length: rows }, () => f.local("v128"));
    const bv = f.local("v128");
    const ar = Array.from({ length: rows }, () => f.local("i32"));
    const bc = Array.from({ length: cols }, () => f.local("i32"));
    const off = f.local("i32");
    const n = f.local("i32");
    const row = f.local("i32");
    f.localGet(a).localSet(ar[0]);
    for (let r = 1; r < rows; r++) f.localGet(ar[r - 1]).localGet(saiB).i32Add().localSet(ar[r]);
    f.localGet(b).localSet(bc[0]);
    for (let j = 1; j < cols; j++) f.localGet(bc[j - 1]).localGet(sbjB).i32Add().localSet(bc[j]);
    const chunk = (u: number) => {
      for (let r = 0; r < rows; r++) {
        f.localGet(ar[r]).localGet(off).i32Add().v128Load({ offset: 16 * u }).localSet(av[r]);
      }
      for (let j = 0; j < cols; j++) {
        f.localGet(bc[j]).localGet(off).i32Add().v128Load({ offset: 16 * u }).localSet(bv);
        for (let r = 0; r < rows; r++) fma(f, cfg.relaxed, acc[r][j], av[r], bv);
      }
    };
    f.localGet(k).i32Const(2).i32ShrU().localSet(n);
    f.block((out) => {
      f.loop((top) => {
        f.localGet(n).i32Const(2).i32LtU().brIf(out);
        chunk(0);
        chunk(1);
        addTo(f, off, 32);
        addTo(f, n, -2);
        f.br(top);
      });
    });
    f.localGet(n);
    f.if(() => {
      chunk(0);
      addTo(f, off, 16);
    });
    // k % 4 leftover elements: n counts them down.
    f.localGet(k).i32Const(3).i32And().localSet(n);
    if (cols === 4) {
      // Transpose-add the four accumulators of each row into one vector of four dot products.
      const t = f.local("v128");
      for (let r = 0; r < rows; r++) {
        const [x0, x1, x2, x3] = acc[r];
        f.localGet(x0).localGet(x1);
        shuffle32(f, [0, 4, 1, 5]);
        f.localGet(x0).localGet(x1);
        shuffle32(f, [2, 6, 3, 7]);
        f.f32x4Add().localSet(t); // [x0a, x1a, x0b, x1b]
        f.localGet(x2).localGet(x3);
        shuffle32(f, [0, 4, 1, 5]);
        f.localGet(x2).localGet(x3);
        shuffle32(f, [2, 6, 3, 7]);
        f.f32x4Add().localSet(x1); // [x2a, x3a, x2b, x3b]
        f.localGet(t).localGet(x1);
        shuffle32(f, [0, 1, 4, 5]);
        f.localGet(t).localGet(x1);
        shuffle32(f, [2, 3, 6, 7]);
        f.f32x4Add().localSet(x0);
      }
      f.block((out) => {
        f.loop((top) => {
          f.localGet(n).i32Eqz().brIf(out);
          f.localGet(bc[0]).localGet(off).i32Add().f32Load().f32x4Splat();
          for (let j = 1; j < 4; j++) {
            f.localGet(bc[j]).localGet(off).i32Add().f32Load().f32x4ReplaceLane(j);
          }
          f.localSet(bv);
          for (let r = 0; r < rows; r++) {
            f.localGet(ar[r]).localGet(off).i32Add().v128Load32Splat().localSet(av[r]);
            fma(f, cfg.relaxed, acc[r][0], av[r], bv);
          }
          addTo(f, off, 4);
          addTo(f, n, -1);
          f.br(top);
        });
      });
      emitTileStore(f, acc.map((x) => [x[0]]), { c, ldcB, flags, biasRow, biasCol, slope, row });
    } else {
      const s = Array.from({ length: rows }, () => f.local("f32"));
      for (let r = 0; r < rows; r++) {
        const x = acc[r][0];
        f.localGet(x).f32x4ExtractLane(0).localGet(x).f32x4ExtractLane(1).f32Add();
        f.localGet(x).f32x4ExtractLane(2).localGet(x).f32x4ExtractLane(3).f32Add();
        f.f32Add().localSet(s[r]);
      }
      f.block((out) => {
        f.loop((top) => {
          f.localGet(n).i32Eqz().brIf(out);
          for (let r = 0; r < rows; r++) {
            f.localGet(ar[r]).localGet(off).i32Add().f32Load();
            f.localGet(bc[0]).localGet(off).i32Add().f32Load().f32Mul();
            f.localGet(s[r]).f32Add().localSet(s[r]);
          }
          addTo(f, off, 4);
          addTo(f, n, -1);
          f.br(top);
        });
      });
      for (let r = 0; r < rows; r++) {
        f.localGet(s[r]);
        f.localGet(c).localGet(ldcB).i32Const(r).i32Mul().i32Add();
        f.localGet(flags);
        f.localGet(biasRow).i32Const(4 * r).i32Add();
        f.localGet(biasCol);
        f.localGet(slope);
        f.call(epi);
      }
    }
  });
}

/** Scalar dot product (a, sapB, b, sbpB, k) -> f32. */
function defineDot(mb: ModuleBuilder): number {
  return mb.addFunction(undefined, ["i32", "i32", "i32", "i32", "i32"], ["f32"], (f) => {
    const [a, sapB, b, sbpB, k] = [0, 1, 2, 3, 4];
    const s = f.local("f32");
    f.block((out) => {
      f.loop((top) => {
        f.localGet(k).i32Eqz().brIf(out);
        f.localGet(a).f32Load().localGet(b).f32Load().f32Mul().localGet(s).f32Add().localSet(s);
        addTo(f, a, () => f.localGet(sapB));
        addTo(f, b, () => f.localGet(sbpB));
        addTo(f, k, -1);
        f.br(top);
      });
    });
    f.localGet(s);
  });
}

/** Generates the module bytes (see the module documentation for the exported `gemm`). */
export function buildGemmModule(opts: GemmOptions): Uint8Array {
  const cfg = resolve(opts);
  if (cfg.relaxed && !relaxedSimdSupported()) cfg.relaxed = false;
  return generate(cfg);
}

function generate(cfg: Config): Uint8Array {
  const mb = new ModuleBuilder();
  mb.importMemory({ min: cfg.minPages, max: cfg.maxPages, shared: true });
  const gemmIndex = mb.declareFunction();
  const epi = defineEpilogueScalar(mb);
  const kernel = defineMicroKernel(mb, cfg);
  // Kernels for the last, shorter row panel (rows 1 .. mr - 1 of an MR-tall packed panel).
  const shortKernels = Array.from(
    { length: cfg.mr - 1 },
    (_, r) => defineMicroKernel(mb, cfg, r + 1),
  );
  const packA = definePack(mb, cfg.mr);
  const packB = definePack(mb, cfg.nr);
  const merge = defineMerge(mb, cfg, epi);
  const DR = 4;
  const d42 = defineDirectTile(mb, cfg, DR, 2);
  const d41 = defineDirectTile(mb, cfg, DR, 1);
  const d18 = defineDirectTile(mb, cfg, 1, 8);
  const d12 = defineDirectTile(mb, cfg, 1, 2);
  const d11 = defineDirectTile(mb, cfg, 1, 1);
  const dot = defineDot(mb);
  const dot24 = defineDotTile(mb, cfg, 2, 4, epi);
  const dot21 = defineDotTile(mb, cfg, 2, 1, epi);
  const dot14 = defineDotTile(mb, cfg, 1, 4, epi);
  const dot11 = defineDotTile(mb, cfg, 1, 1, epi);

  mb.defineFunction(gemmIndex, "gemm", i32s(16), [], (f) => {
    const [a, sai, sap, b, sbp, sbj, c, ldc, k, r0, r1, c0, c1, flags, work, epiPtr] = indices(16);
    const bias = f.local("i32");
    const slope = f.local("f32");
    const locals = (n: number) => Array.from({ length: n }, () => f.local("i32"));
    const [rows, cols, saiB, sapB, sbpB, sbjB, ldcB] = locals(7);
    const [wA, wB, tmp, t1, t2] = locals(5);
    const [jc, nc, pc, kc, kflags, ic, mc, jr, nr, ir, mr] = locals(11);
    const [cptr, brow, bcol, ci, i, j, ai, bj] = locals(8);
    f.localGet(r1).localGet(r0).i32Sub().localSet(rows);
    f.localGet(c1).localGet(c0).i32Sub().localSet(cols);
    f.localGet(rows).i32Const(0).i32LeS().localGet(cols).i32Const(0).i32LeS().i32Or();
    f.if(() => f.return());
    // The epilogue descriptor: { bias byte address: i32, slope: f32 }, read before any packing
    // (so it may live at the start of the scratch block).
    f.localGet(flags).i32Const(EPILOGUE).i32And();
    f.if(() => {
      f.localGet(epiPtr).i32Load().localSet(bias);
      f.localGet(epiPtr).f32Load({ offset: 4 }).localSet(slope);
    });
    const bytes = (src: number, dst: number) => f.localGet(src).i32Const(4).i32Mul().localSet(dst);
    bytes(sai, saiB);
    bytes(sap, sapB);
    bytes(sbp, sbpB);
    bytes(sbj, sbjB);
    bytes(ldc, ldcB);

    // ---- path choice -------------------------------------------------------------------------
    // small = rows <= directRows or rows*cols*k <= directWork (i64: no overflow)
    const [small, useDirect, useDot] = locals(3);
    f.localGet(rows).i32Const(cfg.directRows).i32LeS();
    f.localGet(rows).i64ExtendI32U().localGet(cols).i64ExtendI32U().i64Mul();
    f.localGet(k).i64ExtendI32U().i64Mul().i64Const(cfg.directWork).i64LeU();
    f.i32Or().localSet(small);
    // direct: sbj == 1 and (FORCE_DIRECT or small)
    f.localGet(sbj).i32Const(1).i32Eq();
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_DIRECT).i32And().i32Const(0).i32Ne();
    f.localGet(small).i32Or().i32And().localSet(useDirect);
    // dot: sap == 1 and sbp == 1 and (FORCE_DOT or small or cols <= dotCols)
    f.localGet(sap).i32Const(1).i32Eq().localGet(sbp).i32Const(1).i32Eq().i32And();
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_DOT).i32And().i32Const(0).i32Ne();
    f.localGet(small).i32Or().localGet(cols).i32Const(cfg.dotCols).i32LeS().i32Or();
    f.i32And().localSet(useDot);
    // FORCE_PACKED wins; then FORCE_DOT, FORCE_DIRECT; unforced, a product narrower than 8
    // columns that both could take goes to dot (direct would do it with scalar columns).
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_PACKED).i32And();
    f.if(() => {
      f.i32Const(0).localSet(useDirect);
      f.i32Const(0).localSet(useDot);
    });
    f.localGet(useDot);
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_DOT).i32And().i32Const(0).i32Ne();
    f.localGet(cols).i32Const(8).i32LtS();
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_DIRECT).i32And().i32Eqz().i32And();
    f.i32Or().i32And();
    f.if(() => f.i32Const(0).localSet(useDirect));

    // ---- dot path (A rows and B columns contiguous along p) ----------------------------------
    f.localGet(useDot).localGet(useDirect).i32Eqz().i32And();
    f.if(() => {
      const [kd, pd, kf] = locals(3);
      const call = (fn: number) => {
        // tile at rows r0+i, cols c0+j, p block [pd, pd+kd)
        f.localGet(a).localGet(r0).localGet(i).i32Add().localGet(saiB).i32Mul().i32Add();
        f.localGet(pd).i32Const(4).i32Mul().i32Add().localGet(saiB);
        f.localGet(b).localGet(c0).localGet(j).i32Add().localGet(sbjB).i32Mul().i32Add();
        f.localGet(pd).i32Const(4).i32Mul().i32Add().localGet(sbjB);
        f.localGet(kd);
        f.localGet(c).localGet(r0).localGet(i).i32Add().localGet(ldcB).i32Mul().i32Add();
        f.localGet(c0).localGet(j).i32Add().i32Const(4).i32Mul().i32Add().localGet(ldcB);
        f.localGet(kf);
        f.localGet(bias).localGet(r0).localGet(i).i32Add().i32Const(4).i32Mul().i32Add();
        f.localGet(bias).localGet(c0).localGet(j).i32Add().i32Const(4).i32Mul().i32Add();
        f.localGet(slope).call(fn);
      };
      const colsLoop = (wide: number, narrow: number) => {
        f.i32Const(0).localSet(j);
        f.block((out) => {
          f.loop((top) => {
            f.localGet(j).i32Const(4).i32Add().localGet(cols).i32GtS().brIf(out);
            call(wide);
            addTo(f, j, 4);
            f.br(top);
          });
        });
        f.block((out) => {
          f.loop((top) => {
            f.localGet(j).localGet(cols).i32GeS().brIf(out);
            call(narrow);
            addTo(f, j, 1);
            f.br(top);
          });
        });
      };
      f.i32Const(0).localSet(pd);
      f.loop((pdTop) => {
        minI32(f, t1, t2, () => f.i32Const(cfg.dotKc), () => f.localGet(k).localGet(pd).i32Sub());
        f.localSet(kd);
        f.localGet(flags).i32Const(ACC).i32And().i32Const(ACC).localGet(pd).i32Eqz().select();
        f.localGet(flags).i32Const(EPILOGUE).i32And().i32Const(0);
        f.localGet(pd).localGet(kd).i32Add().localGet(k).i32GeS().select();
        f.i32Or().localSet(kf);
        f.i32Const(0).localSet(i);
        f.block((out) => {
          f.loop((top) => {
            f.localGet(i).i32Const(2).i32Add().localGet(rows).i32GtS().brIf(out);
            colsLoop(dot24, dot21);
            addTo(f, i, 2);
            f.br(top);
          });
        });
        f.localGet(i).localGet(rows).i32LtS();
        f.if(() => colsLoop(dot14, dot11));
        addTo(f, pd, () => f.localGet(kd));
        f.localGet(pd).localGet(k).i32LtS().brIf(pdTop);
      });
      f.return();
    });

    // ---- direct path (B rows contiguous) -----------------------------------------------------
    f.localGet(useDirect);
    f.if(() => {
      const eflags = () => f.localGet(flags).i32Const(ACC | EPILOGUE).i32And();
      const tileCall = (fn: number, width: number) => {
        // a + i*saiB, sai.. ; b + j*4 ; c + i*ldcB + j*4
        f.localGet(ai).localGet(saiB).localGet(sapB);
        f.localGet(bj).localGet(j).i32Const(4).i32Mul().i32Add().localGet(sbpB).localGet(k);
        f.localGet(ci).localGet(j).i32Const(4).i32Mul().i32Add().localGet(ldcB);
        eflags();
        f.localGet(brow);
        f.localGet(bcol).localGet(j).i32Const(4).i32Mul().i32Add();
        f.localGet(slope);
        f.call(fn);
        addTo(f, j, width);
      };
      const scalarCols = (R: number) => {
        forLoop(f, t1, () => f.localGet(j), () => f.localGet(cols), 1, () => {
          for (let r = 0; r < R; r++) {
            f.localGet(ai).localGet(saiB).i32Const(r).i32Mul().i32Add().localGet(sapB);
            f.localGet(bj).localGet(t1).i32Const(4).i32Mul().i32Add().localGet(sbpB).localGet(k);
            f.call(dot);
            f.localGet(ci).localGet(ldcB).i32Const(r).i32Mul().i32Add();
            f.localGet(t1).i32Const(4).i32Mul().i32Add();
            eflags();
            f.localGet(brow).i32Const(4 * r).i32Add();
            f.localGet(bcol).localGet(t1).i32Const(4).i32Mul().i32Add();
            f.localGet(slope);
            f.call(epi);
          }
        });
      };
      const rowBlock = (R: number, wide: number, narrow: number, widest?: number) => {
        // a row pointer, c row pointer, bias row pointer for row i (absolute r0 + i)
        f.localGet(a).localGet(r0).localGet(i).i32Add().localGet(saiB).i32Mul().i32Add();
        f.localSet(ai);
        f.localGet(c).localGet(r0).localGet(i).i32Add().localGet(ldcB).i32Mul().i32Add();
        f.localGet(c0).i32Const(4).i32Mul().i32Add().localSet(ci);
        f.localGet(bias).localGet(r0).localGet(i).i32Add().i32Const(4).i32Mul().i32Add();
        f.localSet(brow);
        f.i32Const(0).localSet(j);
        if (widest !== undefined) {
          // Single rows: 32 columns per tile, so each B row read is two whole cache lines.
          f.block((out) => {
            f.loop((top) => {
              f.localGet(j).i32Const(32).i32Add().localGet(cols).i32GtS().brIf(out);
              tileCall(widest, 32);
              f.br(top);
            });
          });
        }
        f.block((out) => {
          f.loop((top) => {
            f.localGet(j).i32Const(8).i32Add().localGet(cols).i32GtS().brIf(out);
            tileCall(wide, 8);
            f.br(top);
          });
        });
        f.localGet(j).i32Const(4).i32Add().localGet(cols).i32LeS();
        f.if(() => tileCall(narrow, 4));
        scalarCols(R);
        addTo(f, i, R);
      };
      f.localGet(b).localGet(c0).i32Const(4).i32Mul().i32Add().localSet(bj);
      f.localGet(bias).localGet(c0).i32Const(4).i32Mul().i32Add().localSet(bcol);
      f.i32Const(0).localSet(i);
      f.block((out) => {
        f.loop((top) => {
          f.localGet(i).i32Const(DR).i32Add().localGet(rows).i32GtS().brIf(out);
          rowBlock(DR, d42, d41);
          f.br(top);
        });
      });
      f.block((out) => {
        f.loop((top) => {
          f.localGet(i).localGet(rows).i32GeS().brIf(out);
          rowBlock(1, d12, d11, d18);
          f.br(top);
        });
      });
      f.return();
    });

    // ---- packed path -------------------------------------------------------------------------
    f.localGet(work).localSet(wB);
    f.localGet(work).i32Const(4 * cfg.kc * cfg.nc).i32Add().localSet(wA);
    f.localGet(wA).i32Const(4 * cfg.mc * cfg.kc).i32Add().localSet(tmp);
    f.localGet(c0).localSet(jc);
    f.loop((jcTop) => {
      minI32(f, t1, t2, () => f.i32Const(cfg.nc), () => f.localGet(c1).localGet(jc).i32Sub());
      f.localSet(nc);
      f.i32Const(0).localSet(pc);
      f.loop((pcTop) => {
        minI32(f, t1, t2, () => f.i32Const(cfg.kc), () => f.localGet(k).localGet(pc).i32Sub());
        f.localSet(kc);
        // packB(src = b + pc*sbpB + jc*sbjB, lineB = sbjB, stepB = sbpB, lines = nc, kc, wB)
        f.localGet(b).localGet(pc).localGet(sbpB).i32Mul().i32Add();
        f.localGet(jc).localGet(sbjB).i32Mul().i32Add();
        f.localGet(sbjB).localGet(sbpB).localGet(nc).localGet(kc).localGet(wB).call(packB);
        // kflags = (pc == 0 ? flags & ACC : ACC) | (pc + kc >= k ? flags & EPILOGUE : 0)
        f.localGet(flags).i32Const(ACC).i32And().i32Const(ACC).localGet(pc).i32Eqz().select();
        f.localGet(flags).i32Const(EPILOGUE).i32And().i32Const(0);
        f.localGet(pc).localGet(kc).i32Add().localGet(k).i32GeS().select();
        f.i32Or().localSet(kflags);
        f.localGet(r0).localSet(ic);
        f.loop((icTop) => {
          minI32(f, t1, t2, () => f.i32Const(cfg.mc), () => f.localGet(r1).localGet(ic).i32Sub());
          f.localSet(mc);
          // packA(src = a + ic*saiB + pc*sapB, lineB = saiB, stepB = sapB, lines = mc, kc, wA)
          f.localGet(a).localGet(ic).localGet(saiB).i32Mul().i32Add();
          f.localGet(pc).localGet(sapB).i32Mul().i32Add();
          f.localGet(saiB).localGet(sapB).localGet(mc).localGet(kc).localGet(wA).call(packA);
          f.i32Const(0).localSet(jr);
          f.loop((jrTop) => {
            minI32(f, t1, t2, () => f.i32Const(cfg.nr), () => f.localGet(nc).localGet(jr).i32Sub());
            f.localSet(nr);
            // column bias pointer: bias + (jc + jr)*4
            f.localGet(bias).localGet(jc).localGet(jr).i32Add().i32Const(4).i32Mul().i32Add();
            f.localSet(bcol);
            f.i32Const(0).localSet(ir);
            f.loop((irTop) => {
              minI32(
                f,
                t1,
                t2,
                () => f.i32Const(cfg.mr),
                () => f.localGet(mc).localGet(ir).i32Sub(),
              );
              f.localSet(mr);
              // cptr = c + (ic+ir)*ldcB + (jc+jr)*4 ; brow = bias + (ic+ir)*4
              f.localGet(c).localGet(ic).localGet(ir).i32Add().localGet(ldcB).i32Mul().i32Add();
              f.localGet(jc).localGet(jr).i32Add().i32Const(4).i32Mul().i32Add().localSet(cptr);
              f.localGet(bias).localGet(ic).localGet(ir).i32Add().i32Const(4).i32Mul().i32Add();
              f.localSet(brow);
              const panels = () => {
                f.localGet(wA).localGet(ir).localGet(kc).i32Mul().i32Const(4).i32Mul().i32Add();
                f.localGet(wB).localGet(jr).localGet(kc).i32Mul().i32Const(4).i32Mul().i32Add();
                f.localGet(kc);
              };
              // Full-width tiles go straight to C (with a short-row kernel for the last rows);
              // narrower ones through the scratch tile and the merge.
              const direct = (fn: number) => {
                panels();
                f.localGet(cptr).localGet(ldcB).localGet(kflags);
                f.localGet(brow).localGet(bcol).localGet(slope).call(fn);
              };
              const byRows = (r: number) => {
                if (r === cfg.mr) direct(kernel);
                else {
                  f.localGet(mr).i32Const(r).i32Eq();
                  f.if(() => direct(shortKernels[r - 1]), () => byRows(r + 1));
                }
              };
              f.localGet(nr).i32Const(cfg.nr).i32Eq();
              f.if(() => byRows(1), () => {
                panels();
                f.localGet(tmp).i32Const(4 * cfg.nr).i32Const(0);
                f.i32Const(0).i32Const(0).f32Const(0).call(kernel);
                f.localGet(tmp).localGet(cptr).localGet(ldcB).localGet(mr).localGet(nr);
                f.localGet(kflags).localGet(brow).localGet(bcol).localGet(slope).call(merge);
              });
              addTo(f, ir, cfg.mr);
              f.localGet(ir).localGet(mc).i32LtS().brIf(irTop);
            });
            addTo(f, jr, cfg.nr);
            f.localGet(jr).localGet(nc).i32LtS().brIf(jrTop);
          });
          addTo(f, ic, cfg.mc);
          f.localGet(ic).localGet(r1).i32LtS().brIf(icTop);
        });
        addTo(f, pc, () => f.localGet(kc));
        f.localGet(pc).localGet(k).i32LtS().brIf(pcTop);
      });
      addTo(f, jc, cfg.nc);
      f.localGet(jc).localGet(c1).i32LtS().brIf(jcTop);
    });
  });
  return mb.build();
}

let relaxedSupport: boolean | undefined;

/** Whether this engine accepts `f32x4.relaxed_madd` (checked once with `WebAssembly.validate`). */
export function relaxedSimdSupported(): boolean {
  if (relaxedSupport === undefined) {
    const mb = new ModuleBuilder();
    mb.addFunction("f", ["v128", "v128", "v128"], ["v128"], (f) => {
      f.localGet(0).localGet(1).localGet(2).f32x4RelaxedMadd();
    });
    try {
      relaxedSupport = WebAssembly.validate(mb.build() as BufferSource);
    } catch {
      relaxedSupport = false;
    }
  }
  return relaxedSupport;
}

/**
 * The raw export: `gemm(a, sai, sap, b, sbp, sbj, c, ldc, k, rowStart, rowEnd, colStart, colEnd,
 * flags, work, epi)`, 16 i32 arguments (so a thread pool can pass them through an Int32Array).
 *
 * - `a`, `b`, `c`: byte addresses of the operands in the shared memory; `sai`, `sap`, `sbp`,
 *   `sbj`, `ldc`: strides in elements (C's columns are contiguous, its row stride is `ldc`);
 * - `k`: contraction length (0 allowed: C = accumulate ? C : 0, then the epilogue);
 * - `rowStart`/`rowEnd`, `colStart`/`colEnd`: the block of C this call computes (half-open);
 * - `flags`: an OR of {@link GEMM_FLAGS};
 * - `work`: byte address of {@link GEMM_WORK_BYTES} bytes of scratch private to this call
 *   (16-byte alignment recommended);
 * - `epi`: byte address of the epilogue descriptor `{ bias: i32 byte address, slope: f32 }`
 *   (8 bytes), read only when flags has BIAS_ROW, BIAS_COL, RELU or LEAKY_RELU, and read at
 *   entry, so it may be the first 8 bytes of `work`. `bias[i]` is the f32 at `bias + 4*i`,
 *   indexed by the absolute row (BIAS_ROW) or column (BIAS_COL).
 *
 * Addresses are unsigned (pass values >= 2^31 as their i32 bit pattern). C must not overlap A,
 * B or the scratch; A and B may overlap each other. Unused arguments may be anything.
 */
export type GemmFn = (
  a: number,
  sai: number,
  sap: number,
  b: number,
  sbp: number,
  sbj: number,
  c: number,
  ldc: number,
  k: number,
  rowStart: number,
  rowEnd: number,
  colStart: number,
  colEnd: number,
  flags: number,
  work: number,
  epi: number,
) => void;

/** Named arguments of {@link GemmKernel.run} (see {@link GemmFn} for their meaning). */
export interface GemmArgs {
  /** Byte address of A. */
  a: number;
  /** A row stride (elements). */
  sai: number;
  /** A contraction stride (elements). */
  sap: number;
  /** Byte address of B. */
  b: number;
  /** B contraction stride (elements). */
  sbp: number;
  /** B column stride (elements). */
  sbj: number;
  /** Byte address of C. */
  c: number;
  /** C row stride (elements; C columns are contiguous). */
  ldc: number;
  /** Contraction length (0 allowed). */
  k: number;
  /** First row (default 0). */
  rowStart?: number;
  /** Row end (exclusive). */
  rowEnd: number;
  /** First column (default 0). */
  colStart?: number;
  /** Column end (exclusive). */
  colEnd: number;
  /** Add into C (default false). */
  accumulate?: boolean;
  /** Byte address of at least {@link GemmKernel.workBytes} bytes of private scratch. */
  work: number;
  /** Bias vector (byte address) and the axis it runs along. */
  bias?: { ptr: number; axis: "row" | "col" };
  /** Activation after the bias. */
  activation?: "relu" | { leakyRelu: number };
}

const moduleCache = new Map<string, WebAssembly.Module>();

/**
 * The compiled module for `opts` (cached per option set). The bytes are small (~15 KB) and
 * compile in milliseconds; a `WebAssembly.Module` can be posted to workers.
 */
export function gemmModule(opts: GemmOptions): WebAssembly.Module {
  const key = JSON.stringify(resolve(opts));
  let m = moduleCache.get(key);
  if (!m) {
    m = new WebAssembly.Module(buildGemmModule(opts) as BufferSource);
    moduleCache.set(key, m);
  }
  return m;
}

/** A `gemm` instance bound to one shared memory. */
export class GemmKernel {
  /** The raw export (fastest to call in a hot loop). */
  readonly fn: GemmFn;
  /** Whether the module uses relaxed SIMD FMA. */
  readonly relaxed: boolean;
  /** Scratch bytes each concurrent call needs at `work`. */
  readonly workBytes: number;
  readonly #memory: WebAssembly.Memory;
  #I: Int32Array;
  #F: Float32Array;

  private constructor(
    memory: WebAssembly.Memory,
    fn: GemmFn,
    relaxed: boolean,
    workBytes: number,
  ) {
    this.#memory = memory;
    this.fn = fn;
    this.relaxed = relaxed;
    this.workBytes = workBytes;
    this.#I = new Int32Array(memory.buffer);
    this.#F = new Float32Array(memory.buffer);
  }

  /**
   * Instantiates the module over `memory` (shared, at most `opts.maxPages` pages). `relaxed`
   * defaults to whatever the engine supports.
   */
  static create(memory: WebAssembly.Memory, opts: Partial<GemmOptions> = {}): GemmKernel {
    const relaxed = (opts.relaxed ?? true) && relaxedSimdSupported();
    const full = { ...opts, relaxed };
    const inst = new WebAssembly.Instance(gemmModule(full), { env: { memory } });
    return new GemmKernel(memory, inst.exports.gemm as GemmFn, relaxed, gemmWorkBytes(full));
  }

  /**
   * Runs one product (see {@link GemmFn}); with an epilogue, its descriptor is written to the
   * first 8 bytes of `work`.
   */
  run(x: GemmArgs): void {
    let flags = x.accumulate ? ACC : 0;
    if (x.bias) flags |= x.bias.axis === "row" ? BIAS_ROW : BIAS_COL;
    let slope = 0;
    if (x.activation === "relu") flags |= RELU;
    else if (x.activation) {
      flags |= LEAKY;
      slope = x.activation.leakyRelu;
    }
    if (flags & EPILOGUE) {
      if (this.#I.buffer !== this.#memory.buffer) {
        this.#I = new Int32Array(this.#memory.buffer);
        this.#F = new Float32Array(this.#memory.buffer);
      }
      this.#I[x.work >>> 2] = x.bias?.ptr ?? 0;
      this.#F[(x.work >>> 2) + 1] = slope;
    }
    this.fn(
      x.a,
      x.sai,
      x.sap,
      x.b,
      x.sbp,
      x.sbj,
      x.c,
      x.ldc,
      x.k,
      x.rowStart ?? 0,
      x.rowEnd,
      x.colStart ?? 0,
      x.colEnd,
      flags,
      x.work,
      x.work,
    );
  }
}
