/**
 * Matmul WGSL, 2-D and batched, with either operand transposed.
 *
 * - `blocked`: each thread computes a 4x4 block of C held in four vec4 accumulators; operands are
 *   read as vec4 where the layout allows it. No shared memory: llvmpipe emulates barriers, and
 *   register blocking is the step that pays on every adapter.
 * - `simple`: one thread per output element, for small or skinny products (matvec, tiny MLPs).
 * @module
 */

import { BUILTINS, linearIndex, u32 } from "./common.ts";

/** Shape and layout of a (batched) matmul C[b] = op(A[b]) @ op(B[b]). */
export interface MatmulSpec {
  /** Batch count of the output. */
  batch: number;
  /** Rows of C. */
  m: number;
  /** Contraction length. */
  k: number;
  /** Columns of C. */
  n: number;
  /** A is stored as [K, M] (and read transposed). */
  transA: boolean;
  /** B is stored as [N, K] (and read transposed). */
  transB: boolean;
  /** Element stride between consecutive batches of A (0 broadcasts A). */
  batchStrideA: number;
  /** Element stride between consecutive batches of B (0 broadcasts B). */
  batchStrideB: number;
}

/** Threads per workgroup side for the blocked kernel (8x8 threads, 32x32 outputs). */
export const BLOCK_WG = 8;
/** Outputs per thread side in the blocked kernel. */
export const BLOCK_T = 4;

function header(vecA: boolean, vecB: boolean): string {
  return `@group(0) @binding(0) var<storage, read> A: array<${vecA ? "vec4<f32>" : "f32"}>;
@group(0) @binding(1) var<storage, read> B: array<${vecB ? "vec4<f32>" : "f32"}>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;`;
}

/** Whether A can be read as vec4 along K (A not transposed, K a multiple of 4). */
function vec4A(s: MatmulSpec): boolean {
  return !s.transA && s.k % 4 === 0 && s.batchStrideA % 4 === 0;
}

/** Whether B can be read as vec4 along N (B not transposed, N a multiple of 4). */
function vec4B(s: MatmulSpec): boolean {
  return !s.transB && s.n % 4 === 0 && s.batchStrideB % 4 === 0;
}

/** WGSL of the register-blocked kernel; grid = [ceil(n/32), ceil(m/32), batch]. */
export function matmulBlockedShader(s: MatmulSpec): string {
  const { m, k, n } = s;
  const va = vec4A(s);
  const vb = vec4B(s);
  // A element (row r, col kk) of this batch.
  const aAt = (r: string, kk: string) =>
    s.transA ? `A[aBase + (${kk}) * ${u32(m)} + (${r})]` : `A[aBase + (${r}) * ${u32(k)} + (${kk})]`;
  const bAt = (kk: string, c: string) =>
    s.transB ? `B[bBase + (${c}) * ${u32(k)} + (${kk})]` : `B[bBase + (${kk}) * ${u32(n)} + (${c})]`;
  // Clamp rows/cols so loads stay in bounds; stores are guarded instead.
  const rows = [0, 1, 2, 3].map((i) => `min(row0 + ${i}u, ${u32(m - 1)})`);
  const cols = [0, 1, 2, 3].map((j) => `min(col0 + ${j}u, ${u32(n - 1)})`);
  const bRow = (kk: string) =>
    vb
      ? `B[(bBase + (${kk}) * ${u32(n)}) / 4u + col0 / 4u]`
      : `vec4<f32>(${cols.map((c) => bAt(kk, c)).join(", ")})`;
  let body: string;
  if (va && k % 4 === 0) {
    // Step K by 4: four vec4 loads of A (one per row) and four rows of B.
    const aLoads = rows.map((r, i) => `let a${i} = A[(aBase + ${r} * ${u32(k)}) / 4u + kk / 4u];`);
    const bLoads = [0, 1, 2, 3].map((j) => `let b${j} = ${bRow(`kk + ${j}u`)};`);
    const fmas = [0, 1, 2, 3].map((i) =>
      `acc${i} += a${i}.x * b0 + a${i}.y * b1 + a${i}.z * b2 + a${i}.w * b3;`
    );
    body = `for (var kk = 0u; kk < ${u32(k)}; kk += 4u) {
    ${[...aLoads, ...bLoads, ...fmas].join("\n    ")}
  }`;
  } else {
    const aLoads = rows.map((r, i) => `let a${i} = ${aAt(r, "kk")};`);
    const fmas = [0, 1, 2, 3].map((i) => `acc${i} += a${i} * b;`);
    body = `for (var kk = 0u; kk < ${u32(k)}; kk++) {
    ${[...aLoads, `let b = ${bRow("kk")};`, ...fmas].join("\n    ")}
  }`;
  }
  const stores = [0, 1, 2, 3].map((i) => {
    const cells = [0, 1, 2, 3].map((j) =>
      `if (col0 + ${j}u < ${u32(n)}) { C[cBase + r * ${u32(n)} + col0 + ${j}u] = acc${i}[${j}]; }`
    );
    return `{ let r = row0 + ${i}u; if (r < ${u32(m)}) { ${cells.join(" ")} } }`;
  });
  return `${header(va && k % 4 === 0, vb)}
@compute @workgroup_size(${BLOCK_WG}, ${BLOCK_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let col0 = gid.x * 4u;
  let row0 = gid.y * 4u;
  let bat = gid.z;
  if (col0 >= ${u32(n)} || row0 >= ${u32(m)}) { return; }
  let aBase = bat * ${u32(s.batchStrideA)};
  let bBase = bat * ${u32(s.batchStrideB)};
  let cBase = bat * ${u32(m * n)};
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  ${body}
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
