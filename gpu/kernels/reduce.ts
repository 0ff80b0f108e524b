/**
 * Host side of reductions: picks one thread per output or one workgroup per output.
 * @module
 */

import type { Backend } from "../backend.ts";
import { foldGrid, WG } from "../shaders/common.ts";
import { planReduce, type ReduceOp, reduceShader } from "../shaders/reduce.ts";
import { bind, type BufferRef } from "./buffer_ref.ts";

/** Reduces `x` (contiguous, `shape`) over `axes` into `out` (the kept dims, row-major). */
export function runReduce(
  be: Backend,
  op: ReduceOp,
  x: BufferRef,
  shape: readonly number[],
  axes: readonly number[],
  out: BufferRef,
): void {
  const plan = planReduce(shape, axes);
  const nOut = plan.keepShape.reduce((a, b) => a * b, 1);
  const nRed = plan.redShape.reduce((a, b) => a * b, 1);
  if (nOut === 0) return;
  // Long rows and few outputs: a workgroup per output keeps all lanes busy.
  const perGroup = nRed >= 256 && nOut < 4096;
  const { grid, nx } = foldGrid(perGroup ? nOut : Math.ceil(nOut / WG));
  be.run(
    { code: reduceShader(op, plan, nx, perGroup), name: `reduce_${op}` },
    [bind(x, "read"), bind(out, "read_write")],
    grid,
  );
}
