/**
 * Matmul WGSL, 2-D and batched, with either operand transposed.
 *
 * - `blocked`: each thread computes a block of C (4x4 by default) held in vec4 accumulators;
 *   operands are read as vec4 where the layout allows it. No shared memory: llvmpipe emulates barriers, and
 *   register blocking is the step that pays on every adapter.
 * - `simple`: one thread per output element, for small or skinny products (matvec, tiny MLPs).
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
export function matmulBlockedShader(s: MatmulSpec, cfg: BlockConfig = SMALL_BLOCK): string {
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
  let bat = gid.z;
  if (col0 >= ${u32(n)} || row0 >= ${u32(m)}) { return; }
  let aBase = bat * ${u32(s.batchStrideA)};
  let bBase = bat * ${u32(s.batchStrideB)};
  let cBase = bat * ${u32(m * n)};
  ${accs.join("\n  ")}
  for (var kk = 0u; kk < ${u32(k)}; kk += ${KS}u) {
    ${[...lets, ...fmas].join("\n    ")}
  }
  ${stores.join("\n  ")}
}`;
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
