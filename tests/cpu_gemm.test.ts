/**
 * The generated SIMD matrix multiply (gpu/cpu/gemm.ts; the builder's own tests are in
 * wasm_builder.test.ts): products against a double-precision reference over many shapes (edges of
 * the 6 x 8 micro-tile, k = 0, sizes 1, scaled-down DCGAN and MLP products), all four transpose
 * combinations, padded strides, accumulate on and off, sub-blocks of rows and columns (nothing
 * outside touched), the fused epilogues, every path (packed, direct, dot) and both the relaxed-FMA
 * and mul + add modules, plus a small-blocking module that crosses K, M and N block boundaries at
 * small sizes, and two workers computing halves of one product concurrently. Tolerance: (k + 4) *
 * 2^-23 * sum_p |a||b| (plus the magnitudes of what is added), the f32 summation bound.
 */

import assert from "node:assert/strict";
import {
  buildGemmModule,
  GEMM_FLAGS,
  GEMM_WORK_BYTES,
  GemmKernel,
  gemmModule,
  type GemmOptions,
  gemmWorkBytes,
} from "../gpu/cpu/gemm.ts";
import { WorkerPool } from "../gpu/cpu/pool.ts";
import { PAGE, sharedMemory } from "./wasm_memory.ts";

/** mulberry32: deterministic test data. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---- gemm -------------------------------------------------------------------------------------

/** One test product. */
interface Case {
  m: number;
  k: number;
  n: number;
  ta: boolean;
  tb: boolean;
  /** Extra elements per stored row of A / B / C (padded leading dimensions). */
  pad?: number;
  accumulate?: boolean;
  /** Sub-block of C: [r0, r1) x [c0, c1) (default: all). */
  block?: [number, number, number, number];
  /** Flag bits (epilogue and path forcing) beyond ACCUMULATE. */
  flags?: number;
  slope?: number;
}

/** A memory and kernels shared by the gemm tests (grown as needed). */
class Harness {
  memory = sharedMemory(64 << 20);
  kernels = new Map<string, GemmKernel>();

  kernel(opts: Partial<GemmOptions>): GemmKernel {
    const key = JSON.stringify(opts);
    let g = this.kernels.get(key);
    if (!g) {
      g = GemmKernel.create(this.memory, opts);
      this.kernels.set(key, g);
    }
    return g;
  }

  ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / PAGE));
  }
}

const H = new Harness();

/** Runs one case on `g` and checks it against the double-precision reference. */
function check(g: GemmKernel, c: Case, seed: number, what: string): void {
  const { m, k, n, ta, tb } = c;
  const pad = c.pad ?? 0;
  const sai = ta ? 1 : k + pad, sap = ta ? m + pad : 1;
  const sbp = tb ? 1 : n + pad, sbj = tb ? k + pad : 1;
  const ldc = n + pad;
  const aLen = ta ? Math.max(1, k) * (m + pad) : m * (k + pad);
  const bLen = tb ? n * (k + pad) : Math.max(1, k) * (n + pad);
  const cLen = m * ldc;
  const align = (x: number) => Math.ceil(x / 64) * 64;
  const A = 1024;
  const B = align(A + 4 * aLen + 64);
  const C = align(B + 4 * bLen + 64);
  const BIAS = align(C + 4 * cLen + 64);
  const EPI = align(BIAS + 4 * Math.max(m, n) + 64);
  const W = align(EPI + 64);
  H.ensure(W + g.workBytes + 64);
  const F = new Float32Array(H.memory.buffer);
  const I = new Int32Array(H.memory.buffer);
  const r = rng(seed);
  const rnd = () => Math.fround(2 * r() - 1);
  for (let i = 0; i < aLen; i++) F[A / 4 + i] = rnd();
  for (let i = 0; i < bLen; i++) F[B / 4 + i] = rnd();
  for (let i = 0; i < Math.max(m, n); i++) F[BIAS / 4 + i] = rnd();
  const SENTINEL = 12345.5;
  const c0 = new Float32Array(cLen);
  for (let i = 0; i < cLen; i++) c0[i] = c.accumulate ? rnd() : SENTINEL;
  // Sentinels in the padding and outside the block must survive.
  F.set(c0, C / 4);
  // Scratch garbage: the kernel must not depend on zeroed scratch.
  for (let i = 0; i < 4096; i++) F[W / 4 + i] = NaN;
  const flags = (c.accumulate ? GEMM_FLAGS.ACCUMULATE : 0) | (c.flags ?? 0);
  const slope = c.slope ?? 0;
  I[EPI / 4] = BIAS;
  F[EPI / 4 + 1] = slope;
  const [r0, r1, cs, ce] = c.block ?? [0, m, 0, n];
  g.fn(A, sai, sap, B, sbp, sbj, C, ldc, k, r0, r1, cs, ce, flags, W, EPI);
  const out = new Float32Array(H.memory.buffer, C, cLen);
  const bias = new Float32Array(H.memory.buffer, BIAS, Math.max(m, n));
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < ldc; j++) {
      const idx = i * ldc + j;
      const inside = j < n && i >= r0 && i < r1 && j >= cs && j < ce;
      if (!inside) {
        assert.equal(out[idx], c0[idx], `${what}: C[${i},${j}] outside the block changed`);
        continue;
      }
      let s = 0;
      let mag = 0;
      for (let p = 0; p < k; p++) {
        const x = F[A / 4 + i * sai + p * sap] * F[B / 4 + p * sbp + j * sbj];
        s += x;
        mag += Math.abs(x);
      }
      if (c.accumulate) {
        s += c0[idx];
        mag += Math.abs(c0[idx]);
      }
      if (flags & GEMM_FLAGS.BIAS_ROW) {
        s += bias[i];
        mag += Math.abs(bias[i]);
      }
      if (flags & GEMM_FLAGS.BIAS_COL) {
        s += bias[j];
        mag += Math.abs(bias[j]);
      }
      if (flags & GEMM_FLAGS.RELU) s = Math.max(s, 0);
      if (flags & GEMM_FLAGS.LEAKY_RELU) s = s > 0 ? s : s * slope;
      const tol = (k + 4) * 2 ** -23 * mag * Math.max(1, Math.abs(slope)) + 1e-30;
      const got = out[idx];
      if (!(Math.abs(got - s) <= tol)) {
        assert.fail(`${what}: C[${i},${j}] = ${got}, expected ${s} (tol ${tol.toExponential(2)})`);
      }
    }
  }
}

const TRANSPOSES: [boolean, boolean][] = [[false, false], [true, false], [false, true], [
  true,
  true,
]];
const PATHS: [string, number][] = [
  ["auto", 0],
  ["packed", GEMM_FLAGS.FORCE_PACKED],
  ["direct", GEMM_FLAGS.FORCE_DIRECT],
  ["dot", GEMM_FLAGS.FORCE_DOT],
];
const caseName = (c: Case) =>
  `${c.m}x${c.k}x${c.n}${c.ta ? " A^T" : ""}${c.tb ? " B^T" : ""}${c.pad ? ` pad ${c.pad}` : ""}` +
  `${c.accumulate ? " acc" : ""}${c.block ? ` block ${c.block}` : ""}`;

/** Shapes (m, k, n) around the micro-tile's edges and the workloads' sizes. */
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [7, 5, 13],
  [6, 256, 8],
  [6, 8, 256],
  [5, 7, 9],
  [12, 16, 16],
  [13, 17, 19],
  [1, 37, 70],
  [70, 37, 1],
  [2, 3, 1],
  [1, 300, 1],
  [64, 25, 196], // DCGAN D1 forward, batch 1
  [16, 784, 25], // D1 weight gradient, scaled down
  [25, 16, 784], // D1 input gradient, scaled down
  [32, 100, 64], // MLP layer
  [32, 64, 100],
  [40, 300, 50], // crosses KC = 256
  [3, 9, 4],
  [9, 3, 12],
];

for (const relaxed of [true, false]) {
  Deno.test(`gemm (${relaxed ? "relaxed FMA" : "mul + add"}): shapes x transposes x paths`, () => {
    const g = H.kernel({ relaxed });
    if (relaxed) assert.ok(g.relaxed);
    let seed = 1;
    for (const [m, k, n] of SHAPES) {
      for (const [ta, tb] of TRANSPOSES) {
        for (const [pathName, path] of PATHS) {
          for (const accumulate of [false, true]) {
            const c: Case = {
              m,
              k,
              n,
              ta,
              tb,
              accumulate,
              flags: path,
              pad: seed % 3 === 0 ? 3 : 0,
            };
            check(g, c, seed++, `${caseName(c)} ${pathName}`);
          }
        }
      }
    }
  });
}

Deno.test("gemm: k = 0 gives 0 or leaves C, then the epilogue", () => {
  for (const relaxed of [true, false]) {
    const g = H.kernel({ relaxed });
    let seed = 100;
    for (const [m, n] of [[1, 1], [7, 13], [12, 16], [20, 3]]) {
      for (const [ta, tb] of TRANSPOSES) {
        for (const [pathName, path] of PATHS) {
          for (const accumulate of [false, true]) {
            const c: Case = { m, k: 0, n, ta, tb, accumulate, flags: path };
            check(g, c, seed++, `${caseName(c)} ${pathName}`);
            const e: Case = { ...c, flags: path | GEMM_FLAGS.BIAS_COL | GEMM_FLAGS.RELU };
            check(g, e, seed++, `${caseName(c)} ${pathName} bias+relu`);
          }
        }
      }
    }
  }
});

Deno.test("gemm: sub-blocks of rows and columns touch nothing else", () => {
  const g = H.kernel({ relaxed: true });
  let seed = 200;
  const blocks: [number, number, number, [number, number, number, number]][] = [
    [20, 30, 40, [3, 17, 5, 29]],
    [20, 30, 40, [0, 6, 8, 16]],
    [20, 30, 40, [19, 20, 0, 40]],
    [20, 30, 40, [0, 20, 39, 40]],
    [20, 30, 40, [5, 5, 0, 40]], // empty
    [3, 300, 50, [1, 2, 9, 47]],
    [50, 300, 3, [13, 47, 1, 3]],
  ];
  for (const [m, k, n, block] of blocks) {
    for (const [ta, tb] of TRANSPOSES) {
      for (const [pathName, path] of PATHS) {
        for (const accumulate of [false, true]) {
          const c: Case = { m, k, n, ta, tb, accumulate, block, flags: path, pad: 2 };
          check(g, c, seed++, `${caseName(c)} ${pathName}`);
        }
      }
    }
  }
});

Deno.test("gemm: fused epilogues (bias per row / column, ReLU, leaky ReLU)", () => {
  const epilogues: [string, number, number][] = [
    ["bias row", GEMM_FLAGS.BIAS_ROW, 0],
    ["bias col", GEMM_FLAGS.BIAS_COL, 0],
    ["relu", GEMM_FLAGS.RELU, 0],
    ["leaky 0.2", GEMM_FLAGS.LEAKY_RELU, 0.2],
    ["bias row + relu", GEMM_FLAGS.BIAS_ROW | GEMM_FLAGS.RELU, 0],
    ["bias col + leaky 0.01", GEMM_FLAGS.BIAS_COL | GEMM_FLAGS.LEAKY_RELU, 0.01],
  ];
  let seed = 300;
  for (const relaxed of [true, false]) {
    const g = H.kernel({ relaxed });
    for (const [m, k, n] of [[13, 17, 19], [40, 300, 50], [1, 33, 20], [33, 20, 2], [6, 8, 8]]) {
      for (const [ta, tb] of TRANSPOSES) {
        for (const [pathName, path] of PATHS) {
          for (const [epiName, epi, slope] of epilogues) {
            const accumulate = seed % 2 === 0;
            const block: [number, number, number, number] | undefined = seed % 3 === 0
              ? [Math.floor(m / 3), m, Math.floor(n / 4), n]
              : undefined;
            const c: Case = { m, k, n, ta, tb, accumulate, block, flags: path | epi, slope };
            check(g, c, seed++, `${caseName(c)} ${pathName} ${epiName}`);
          }
        }
      }
    }
  }
});

Deno.test("gemm: small blocking crosses K, M and N block boundaries", () => {
  // kc 16, mc 12, nc 16: the products below cross every block boundary, with edges.
  for (const relaxed of [true, false]) {
    const blockings = [
      { kc: 16, mc: 12, nc: 16 },
      { kc: 5, mc: 6, nc: 8, mr: 4, nr: 4 },
      { kc: 7, mc: 10, nc: 24, mr: 5, nr: 12 },
      { kc: 9, mc: 14, nc: 16, mr: 7, nr: 16 },
    ];
    for (const opts of blockings) {
      const g = H.kernel({ relaxed, ...opts, dotKc: 12 });
      let seed = 400;
      for (const [m, k, n] of [[25, 35, 41], [12, 16, 16], [13, 33, 17], [1, 40, 3]]) {
        for (const [ta, tb] of TRANSPOSES) {
          for (const [pathName, path] of PATHS) {
            const accumulate = seed % 2 === 1;
            const flags = path | (seed % 3 === 0 ? GEMM_FLAGS.BIAS_ROW | GEMM_FLAGS.RELU : 0);
            const c: Case = { m, k, n, ta, tb, accumulate, flags };
            check(g, c, seed++, `${JSON.stringify(opts)} ${caseName(c)} ${pathName}`);
          }
        }
      }
    }
  }
});

Deno.test("gemm: module validates, scratch rule, typed wrapper", () => {
  for (const relaxed of [true, false]) {
    const bytes = buildGemmModule({ relaxed });
    assert.ok(WebAssembly.validate(bytes as BufferSource));
  }
  assert.equal(GEMM_WORK_BYTES, 4 * (256 * 2048 + 120 * 256 + 6 * 8));
  assert.equal(gemmWorkBytes({ kc: 16, mc: 12, nc: 16 }), 4 * (16 * 16 + 12 * 16 + 48));
  assert.throws(() => buildGemmModule({ relaxed: true, nr: 6 }), /micro-tile/);
  // GemmKernel.run: A^T (stored [K, M]) times B, bias per column, leaky ReLU, sub-block.
  const g = H.kernel({ relaxed: true });
  const m = 9, k = 11, n = 10;
  const F = new Float32Array(H.memory.buffer);
  const A = 4096, B = 8192, C = 12288, BIAS = 16384, W = 32768;
  const r = rng(7);
  for (let i = 0; i < m * k; i++) F[A / 4 + i] = r() - 0.5;
  for (let i = 0; i < k * n; i++) F[B / 4 + i] = r() - 0.5;
  for (let j = 0; j < n; j++) F[BIAS / 4 + j] = r() - 0.5;
  F.fill(7, C / 4, C / 4 + m * n);
  g.run({
    a: A,
    sai: 1,
    sap: m,
    b: B,
    sbp: n,
    sbj: 1,
    c: C,
    ldc: n,
    k,
    rowStart: 2,
    rowEnd: m,
    colEnd: n,
    work: W,
    bias: { ptr: BIAS, axis: "col" },
    activation: { leakyRelu: 0.1 },
  });
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = F[BIAS / 4 + j];
      for (let p = 0; p < k; p++) s += F[A / 4 + p * m + i] * F[B / 4 + p * n + j];
      s = s > 0 ? s : 0.1 * s;
      const got = F[C / 4 + i * n + j];
      if (i < 2) assert.equal(got, 7);
      else assert.ok(Math.abs(got - s) < 1e-5, `C[${i},${j}] = ${got}, expected ${s}`);
    }
  }
});

Deno.test("gemm: the main thread and two workers compute thirds of one product concurrently", () => {
  const m = 50, k = 70, n = 90;
  const memory = sharedMemory(16 << 20);
  const F = new Float32Array(memory.buffer);
  const CTRL = 256, A = 4096, B = A + 4 * m * k + 64, C = B + 4 * k * n + 64;
  const W0 = Math.ceil((C + 4 * m * n) / 256) * 256 + 256;
  const step = Math.ceil(GEMM_WORK_BYTES / 256) * 256;
  assert.ok(WorkerPool.controlBytes(3) < A - CTRL);
  const r = rng(11);
  for (let i = 0; i < m * k; i++) F[A / 4 + i] = r() - 0.5;
  for (let i = 0; i < k * n; i++) F[B / 4 + i] = r() - 0.5;
  const main = GemmKernel.create(memory, { relaxed: true });
  const pool = new WorkerPool(memory, gemmModule({ relaxed: main.relaxed }), ["gemm"], 3, CTRL);
  try {
    for (let round = 0; round < 3; round++) {
      F.fill(0, C / 4, C / 4 + m * n);
      // Columns [0, 32), [32, 64), [64, 90); transposed-B layout in round 2.
      const tb = round === 2;
      const sbp = tb ? 1 : n, sbj = tb ? k : 1;
      const share = (c0: number, c1: number, w: number) => [
        A,
        k,
        1,
        B,
        sbp,
        sbj,
        C,
        n,
        k,
        0,
        m,
        c0,
        c1,
        0,
        W0 + w * step,
        W0 + w * step,
      ];
      pool.run(main.fn, "gemm", [share(0, 32, 0), share(32, 64, 1), share(64, n, 2)]);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += F[A / 4 + i * k + p] * F[B / 4 + p * sbp + j * sbj];
          assert.ok(Math.abs(F[C / 4 + i * n + j] - s) < 1e-4, `round ${round} C[${i},${j}]`);
        }
      }
    }
  } finally {
    pool.close();
  }
});
