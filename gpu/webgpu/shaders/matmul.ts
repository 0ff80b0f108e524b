/**
 * Matmul WGSL, 2-D and batched, with either operand transposed.
 *
 * - `blocked`: each thread computes a block of C (4x4 by default) held in vec4 accumulators;
 *   operands are read as vec4 where the layout allows it. No shared memory: llvmpipe emulates
 *   barriers, and register blocking is the step that pays on every adapter (the default there).
 * - `tiled`: workgroup-memory tiles (e.g. 64x64 or 128x64 outputs a workgroup, 16-deep slices of
 *   both operands staged with vec4 loads, a 4x4 or 8x4 register tile a thread): the default on
 *   hardware adapters, where staging cuts global-memory traffic by the tile width.
 * - `simple`: one thread per output element, for small or skinny products (matvec, tiny MLPs).
 *
 * `blocked` and `tiled` take an optional split of the contraction (split-K): the kernel then
 * writes one partial product per slice and {@link splitKSumShader} sums them (for small outputs
 * with long contractions, e.g. weight gradients, that would fill a fraction of a big GPU).
 * @module
 */

import type { MatmulSpec } from "../../kernel.ts";
import { BUILTINS, linearIndex, u32 } from "./common.ts";

function header(vecA: boolean, vecB: boolean): string {
  return `@group(0) @binding(0) var<storage, read> A: array<${vecA ? "vec4<f32>" : "f32"}>;
@group(0) @binding(1) var<storage, read> B: array<${vecB ? "vec4<f32>" : "f32"}>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;`;
}

/** Tile parameters of the blocked kernel. */
export interface BlockConfig {
  /** Rows of C per thread (4 or 8). */
  rows: number;
  /** vec4 column groups of C per thread (1 or 2): 4 * cols columns. */
  cols: number;
  /** Workgroup size [x (columns), y (rows)]. */
  wg: [number, number];
}

/** The small tile: 4x4 outputs a thread, 8x8 threads (32x32 outputs a workgroup). */
export const SMALL_BLOCK: BlockConfig = { rows: 4, cols: 1, wg: [8, 8] };

/**
 * The large tile: 8x8 outputs a thread, 8x8 threads (64x64 a workgroup). On llvmpipe (2 cores)
 * it ran 1.5-1.9x faster than 4x4 at 256-1024 (see bench/matmul.bench.ts).
 */
export const LARGE_BLOCK: BlockConfig = { rows: 8, cols: 2, wg: [8, 8] };

/** Outputs covered by one workgroup: [columns, rows]. */
export function blockTile(cfg: BlockConfig): [number, number] {
  return [cfg.wg[0] * 4 * cfg.cols, cfg.wg[1] * cfg.rows];
}

/**
 * WGSL of the register-blocked kernel; grid = [ceil(n / tileN), ceil(m / tileM), batch] with the
 * tile from {@link blockTile}. Each thread keeps rows x (4 * cols) accumulators in vec4s. Operands
 * are loaded as vec4 along whichever dimension is contiguous and a multiple of 4:
 * A along K (row-major) or M (transposed); B along N (row-major) or K (transposed).
 */
export function matmulBlockedShader(
  s: MatmulSpec,
  cfg: BlockConfig = SMALL_BLOCK,
  split?: SplitK,
): string {
  const { m, k, n } = s;
  const R = cfg.rows;
  const C = cfg.cols;
  const aMode = !s.transA
    ? (k % 4 === 0 && s.batchStrideA % 4 === 0 ? "vecK" : "scalar")
    : (m % 4 === 0 && R % 4 === 0 && s.batchStrideA % 4 === 0 ? "vecM" : "scalar");
  const bMode = !s.transB
    ? (n % 4 === 0 && s.batchStrideB % 4 === 0 ? "vecN" : "scalar")
    : (k % 4 === 0 && s.batchStrideB % 4 === 0 ? "vecK" : "scalar");
  const KS = k % 4 === 0 ? 4 : 1;
  const rowIdx = (i: number) => `min(row0 + ${i}u, ${u32(m - 1)})`;
  const colIdx = (j: number) => `min(col0 + ${j}u, ${u32(n - 1)})`;
  const lets: string[] = [];
  // a(i, t): value of A at row i of the block and k offset t.
  let a: (i: number, t: number) => string;
  if (aMode === "vecK") {
    for (let i = 0; i < R; i++) {
      lets.push(`let a${i} = A[(aBase + ${rowIdx(i)} * ${u32(k)} + kk) / 4u];`);
    }
    a = (i, t) => (KS === 4 ? `a${i}[${t}]` : "");
  } else if (aMode === "vecM") {
    for (let t = 0; t < KS; t++) {
      for (let g = 0; g < R / 4; g++) {
        lets.push(
          `let a${t}_${g} = A[(aBase + (kk + ${t}u) * ${u32(m)}) / 4u + min(row0 / 4u + ${g}u, ${
            u32(m / 4 - 1)
          })];`,
        );
      }
    }
    a = (i, t) => `a${t}_${Math.floor(i / 4)}[${i % 4}]`;
  } else {
    for (let t = 0; t < KS; t++) {
      for (let i = 0; i < R; i++) {
        const at = s.transA
          ? `A[aBase + (kk + ${t}u) * ${u32(m)} + ${rowIdx(i)}]`
          : `A[aBase + ${rowIdx(i)} * ${u32(k)} + kk + ${t}u]`;
        lets.push(`let a${i}_${t} = ${at};`);
      }
    }
    a = (i, t) => `a${i}_${t}`;
  }
  // b(c, t): vec4 of B at column group c and k offset t.
  let b: (c: number, t: number) => string;
  if (bMode === "vecN") {
    for (let t = 0; t < KS; t++) {
      for (let c = 0; c < C; c++) {
        lets.push(
          `let b${t}_${c} = B[(bBase + (kk + ${t}u) * ${u32(n)}) / 4u + min(col0 / 4u + ${c}u, ${
            u32(n / 4 - 1)
          })];`,
        );
      }
    }
    b = (c, t) => `b${t}_${c}`;
  } else if (bMode === "vecK") {
    for (let j = 0; j < 4 * C; j++) {
      lets.push(`let bk${j} = B[(bBase + ${colIdx(j)} * ${u32(k)} + kk) / 4u];`);
    }
    b = (c, t) => `vec4<f32>(${[0, 1, 2, 3].map((q) => `bk${4 * c + q}[${t}]`).join(", ")})`;
  } else {
    for (let t = 0; t < KS; t++) {
      for (let c = 0; c < C; c++) {
        const cells = [0, 1, 2, 3].map((q) => {
          const col = colIdx(4 * c + q);
          return s.transB
            ? `B[bBase + ${col} * ${u32(k)} + kk + ${t}u]`
            : `B[bBase + (kk + ${t}u) * ${u32(n)} + ${col}]`;
        });
        lets.push(`let b${t}_${c} = vec4<f32>(${cells.join(", ")});`);
      }
    }
    b = (c, t) => `b${t}_${c}`;
  }
  const fmas: string[] = [];
  for (let t = 0; t < KS; t++) {
    for (let i = 0; i < R; i++) {
      for (let c = 0; c < C; c++) fmas.push(`acc${i}_${c} += ${a(i, t)} * ${b(c, t)};`);
    }
  }
  const accs: string[] = [];
  const stores: string[] = [];
  for (let i = 0; i < R; i++) {
    for (let c = 0; c < C; c++) {
      accs.push(`var acc${i}_${c} = vec4<f32>(0.0);`);
      const cells = [0, 1, 2, 3].map((q) =>
        `if (col0 + ${4 * c + q}u < ${u32(n)}) { C[cBase + r * ${u32(n)} + col0 + ${
          4 * c + q
        }u] = acc${i}_${c}[${q}]; }`
      );
      stores.push(`{ let r = row0 + ${i}u; if (r < ${u32(m)}) { ${cells.join(" ")} } }`);
    }
  }
  return `${header(aMode !== "scalar", bMode !== "scalar")}
@compute @workgroup_size(${cfg.wg[0]}, ${cfg.wg[1]})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let col0 = gid.x * ${4 * C}u;
  let row0 = gid.y * ${R}u;
  if (col0 >= ${u32(n)} || row0 >= ${u32(m)}) { return; }
  ${kRange(s, split)}
  let aBase = bat * ${u32(s.batchStrideA)};
  let bBase = bat * ${u32(s.batchStrideB)};
  ${accs.join("\n  ")}
  for (var kk = kBeg; kk < kEnd; kk += ${KS}u) {
    ${[...lets, ...fmas].join("\n    ")}
  }
  ${stores.join("\n  ")}
}`;
}

/**
 * WGSL defining `bat`, the contraction range [kBeg, kEnd) and the output base `cBase` of a
 * workgroup from `z` (the batch, or batch * parts + part with a split).
 */
function kRange(s: MatmulSpec, split: SplitK | undefined, z = "gid.z"): string {
  if (!split) {
    return `let bat = ${z};
  let kBeg = 0u;
  let kEnd = ${u32(s.k)};
  let cBase = bat * ${u32(s.m * s.n)};`;
  }
  return `let part = ${z} % ${u32(split.parts)};
  let bat = ${z} / ${u32(split.parts)};
  let kBeg = part * ${u32(split.chunk)};
  let kEnd = min(kBeg + ${u32(split.chunk)}, ${u32(s.k)});
  let cBase = ${z} * ${u32(s.m * s.n)};`;
}

/** WGSL of the one-thread-per-output kernel over a folded 1-D grid of batch*m*n threads. */
export function matmulSimpleShader(s: MatmulSpec, nx: number): string {
  const { m, k, n } = s;
  const aAt = s.transA ? `A[aBase + kk * ${u32(m)} + r]` : `A[aBase + r * ${u32(k)} + kk]`;
  const bAt = s.transB ? `B[bBase + c * ${u32(k)} + kk]` : `B[bBase + kk * ${u32(n)} + c]`;
  return `${header(false, false)}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(s.batch * m * n)}) { return; }
  let c = i % ${u32(n)};
  let r = (i / ${u32(n)}) % ${u32(m)};
  let bat = i / ${u32(m * n)};
  let aBase = bat * ${u32(s.batchStrideA)};
  let bBase = bat * ${u32(s.batchStrideB)};
  var acc = 0.0;
  for (var kk = 0u; kk < ${u32(k)}; kk++) {
    acc += ${aAt} * ${bAt};
  }
  C[i] = acc;
}`;
}

/** Tile parameters of the workgroup-memory tiled kernel. */
export interface TileConfig {
  /** Rows of C per workgroup. */
  tm: number;
  /** Columns of C per workgroup. */
  tn: number;
  /** Contraction slice staged in workgroup memory per step (a multiple of 4). */
  bk: number;
  /** Rows of C per thread (a multiple of 4 dividing `tm`). */
  rm: number;
  /** Columns of C per thread (a multiple of 4 dividing `tn`). */
  rn: number;
}

/** 64x64 outputs a workgroup, 16-deep slices, 4x4 per thread (256 threads, 8 KiB shared). */
export const TILE_64: TileConfig = { tm: 64, tn: 64, bk: 16, rm: 4, rn: 4 };

/** 128x64 outputs a workgroup, 16-deep slices, 8x4 per thread (256 threads, 12 KiB shared). */
export const TILE_128x64: TileConfig = { tm: 128, tn: 64, bk: 16, rm: 8, rn: 4 };

/** 64x64 outputs a workgroup, 8x8 per thread (64 threads, 8 KiB shared): fewer, fatter threads. */
export const TILE_64_8x8: TileConfig = { tm: 64, tn: 64, bk: 16, rm: 8, rn: 8 };

/** Threads of a tiled workgroup: [x (column groups), y (row groups)]. */
export function tileThreads(t: TileConfig): [number, number] {
  return [t.tn / t.rn, t.tm / t.rm];
}

/** Bytes of workgroup memory a tile stages (both operand slices). */
export function tileSharedBytes(t: TileConfig): number {
  return 4 * t.bk * (t.tm + t.tn);
}

/** Throws unless `t` is a valid tile within WebGPU's default limits (256 threads, 16 KiB). */
export function checkTile(t: TileConfig): void {
  const [x, y] = tileThreads(t);
  const ok = t.rm % 4 === 0 && t.rn % 4 === 0 && t.bk % 4 === 0 && t.bk > 0 &&
    t.tm % t.rm === 0 && t.tn % t.rn === 0 && x * y <= 256 && tileSharedBytes(t) <= 16384;
  if (!ok) throw new Error(`invalid matmul tile ${JSON.stringify(t)}`);
}

/**
 * How a matmul's contraction is split (split-K): `parts` slices of `chunk` (a multiple of 32)
 * elements each, the last one shorter. The kernel then writes `parts` partial products, slice-major
 * within each batch (`P[(bat * parts + part) * m * n + i]`), summed by {@link splitKSumShader}.
 */
export interface SplitK {
  /** Number of slices (>= 2). */
  parts: number;
  /** Contraction elements per slice. */
  chunk: number;
}

/** The split of `k` into about `parts` slices whose length is a multiple of 32. */
export function splitK(k: number, parts: number): SplitK {
  const chunk = Math.max(32, Math.ceil(k / parts / 32) * 32);
  return { parts: Math.ceil(k / chunk), chunk };
}

/**
 * WGSL of the workgroup-memory tiled kernel; grid = [ceil(n / tn), ceil(m / tm), batch] (times
 * `split.parts` in z with a split). Each step stages a `bk`-deep slice of A (k-major, tm wide) and
 * of B (k-major, tn wide) in `var<workgroup>` arrays of vec4, loaded with vec4 reads along
 * whichever dimension is contiguous (and a multiple of 4; scalar reads otherwise), then each
 * thread accumulates its rm x rn block from vec4 reads of the staged slices. Out-of-range rows,
 * columns and contraction indices are staged as zeros, so every thread reaches every barrier.
 */
export function matmulTiledShader(s: MatmulSpec, t: TileConfig, split?: SplitK): string {
  checkTile(t);
  const { m, k, n } = s;
  const [tx, ty] = tileThreads(t);
  const T = tx * ty;
  const { tm, tn, bk, rm, rn } = t;
  // Vector paths: the whole vec4 is in range or out of it, and aligned.
  const aVecM = s.transA && m % 4 === 0 && s.batchStrideA % 4 === 0;
  const aVecK = !s.transA && k % 4 === 0 && s.batchStrideA % 4 === 0;
  const bVecN = !s.transB && n % 4 === 0 && s.batchStrideB % 4 === 0;
  const bVecK = s.transB && k % 4 === 0 && s.batchStrideB % 4 === 0;
  const loads: string[] = [];
  // Stages `count` loads, `T` threads at a time: `body(l)` with `l` the load index.
  const stage = (count: number, body: string) => {
    const iters = Math.ceil(count / T);
    for (let it = 0; it < iters; it++) {
      const guard = (it + 1) * T > count ? `if (l < ${u32(count)}) ` : "";
      loads.push(`{ let l = lid + ${u32(it * T)}; ${guard}{ ${body} } }`);
    }
  };
  // Operand X (A: rows = m side; B: cols = n side) tile `w` wide (tm or tn), read at (kk, j).
  const operand = (
    name: "A" | "B",
    w: number,
    outer: number, // m or n
    origin: string, // row0 or col0
    vecOuter: boolean,
    vecK: boolean,
    trans: boolean, // stored as [K, outer] (contiguous along outer)
  ) => {
    const S = name === "A" ? "As" : "Bs";
    const base = name === "A" ? "aBase" : "bBase";
    const at = (kk: string, j: string) =>
      trans ? `${base} + (${kk}) * ${u32(outer)} + ${j}` : `${base} + (${j}) * ${u32(k)} + ${kk}`;
    if (vecOuter) {
      // vec4 along the outer dim straight into the k-major tile.
      const per = w / 4;
      stage(
        bk * per,
        `let kk = l / ${u32(per)}; let j4 = l % ${
          u32(per)
        }; let gk = k0 + kk; let gj = ${origin} + 4u * j4;
      var v = vec4<f32>(0.0);
      if (gk < kEnd && gj < ${u32(outer)}) { v = ${name}[(${at("gk", "gj")}) / 4u]; }
      ${S}[kk * ${u32(per)} + j4] = v;`,
      );
    } else if (vecK) {
      // vec4 along k, scattered over four k rows of the tile.
      const per = bk / 4;
      stage(
        w * per,
        `let j = l / ${u32(per)}; let k4 = l % ${
          u32(per)
        }; let gk = k0 + 4u * k4; let gj = ${origin} + j;
      var v = vec4<f32>(0.0);
      if (gk < kEnd && gj < ${u32(outer)}) { v = ${name}[(${at("gk", "gj")}) / 4u]; }
      for (var q = 0u; q < 4u; q++) { ${S}[(4u * k4 + q) * ${
          u32(w / 4)
        } + j / 4u][j % 4u] = v[q]; }`,
      );
    } else {
      // Scalar reads, consecutive threads along the contiguous dimension.
      const body = trans
        ? `let kk = l / ${u32(w)}; let j = l % ${u32(w)};`
        : `let j = l / ${u32(bk)}; let kk = l % ${u32(bk)};`;
      stage(
        bk * w,
        `${body} let gk = k0 + kk; let gj = ${origin} + j;
      var v = 0.0;
      if (gk < kEnd && gj < ${u32(outer)}) { v = ${name}[${at("gk", "gj")}]; }
      ${S}[kk * ${u32(w / 4)} + j / 4u][j % 4u] = v;`,
      );
    }
  };
  operand("A", tm, m, "row0", aVecM, aVecK, s.transA);
  operand("B", tn, n, "col0", bVecN, bVecK, !s.transB);
  const body: string[] = [];
  for (let g = 0; g < rm / 4; g++) body.push(`let a${g} = As[kk * ${u32(tm / 4)} + ar + ${g}u];`);
  for (let c = 0; c < rn / 4; c++) body.push(`let b${c} = Bs[kk * ${u32(tn / 4)} + bc + ${c}u];`);
  for (let i = 0; i < rm; i++) {
    for (let c = 0; c < rn / 4; c++) {
      body.push(`acc${i}_${c} += a${i >> 2}[${i & 3}] * b${c};`);
    }
  }
  const accs: string[] = [];
  const stores: string[] = [];
  for (let i = 0; i < rm; i++) {
    const cells: string[] = [];
    for (let c = 0; c < rn / 4; c++) {
      accs.push(`var acc${i}_${c} = vec4<f32>(0.0);`);
      for (let q = 0; q < 4; q++) {
        const j = 4 * c + q;
        cells.push(
          `if (cc + ${j}u < ${u32(n)}) { C[cBase + r * ${
            u32(n)
          } + cc + ${j}u] = acc${i}_${c}[${q}]; }`,
        );
      }
    }
    stores.push(`{ let r = rr + ${i}u; if (r < ${u32(m)}) { ${cells.join(" ")} } }`);
  }
  return `@group(0) @binding(0) var<storage, read> A: array<${
    aVecK || aVecM ? "vec4<f32>" : "f32"
  }>;
@group(0) @binding(1) var<storage, read> B: array<${bVecK || bVecN ? "vec4<f32>" : "f32"}>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
var<workgroup> As: array<vec4<f32>, ${bk * tm / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${bk * tn / 4}>;
@compute @workgroup_size(${tx}, ${ty})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u,
    @builtin(local_invocation_index) lid: u32) {
  let row0 = wid.y * ${u32(tm)};
  let col0 = wid.x * ${u32(tn)};
  ${kRange(s, split, "wid.z")}
  let aBase = bat * ${u32(s.batchStrideA)};
  let bBase = bat * ${u32(s.batchStrideB)};
  let ar = lid3.y * ${u32(rm / 4)};
  let bc = lid3.x * ${u32(rn / 4)};
  ${accs.join("\n  ")}
  for (var k0 = kBeg; k0 < kEnd; k0 += ${u32(bk)}) {
    ${loads.join("\n    ")}
    workgroupBarrier();
    for (var kk = 0u; kk < ${u32(bk)}; kk++) {
      ${body.join("\n      ")}
    }
    workgroupBarrier();
  }
  let rr = row0 + lid3.y * ${u32(rm)};
  let cc = col0 + lid3.x * ${u32(rn)};
  ${stores.join("\n  ")}
}`;
}

/**
 * WGSL summing split-K partial products (binding 0, from a split kernel) into C (binding 1), one
 * thread per output over a folded 1-D grid of `batch * m * n` threads, slices in order.
 */
export function splitKSumShader(s: MatmulSpec, parts: number, nx: number): string {
  const mn = s.m * s.n;
  return `@group(0) @binding(0) var<storage, read> P: array<f32>;
@group(0) @binding(1) var<storage, read_write> C: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(s.batch * mn)}) { return; }
  let bat = i / ${u32(mn)};
  let base = bat * ${u32(parts * mn)} + i % ${u32(mn)};
  var acc = 0.0;
  for (var p = 0u; p < ${u32(parts)}; p++) { acc += P[base + p * ${u32(mn)}]; }
  C[i] = acc;
}`;
}
