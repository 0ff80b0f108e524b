/**
 * Host side of matmul: picks the register-blocked kernel or the one-thread-per-output kernel.
 * @module
 */

import type { Backend } from "../backend.ts";
import { foldGrid, WG } from "../shaders/common.ts";
import {
  BLOCK_T,
  BLOCK_WG,
  matmulBlockedShader,
  matmulSimpleShader,
  type MatmulSpec,
} from "../shaders/matmul.ts";
import { bind, type BufferRef } from "./buffer_ref.ts";

/** Chooses the kernel variant for a product (exported for benchmarks and tests). */
export function matmulVariant(s: MatmulSpec): "blocked" | "simple" {
  // Products too small to fill 32x32 tiles, or with a dimension below 4, run one thread per output.
  return s.m * s.n < 2048 || s.m < 8 || s.n < 8 ? "simple" : "blocked";
}

/** Runs C = op(A) @ op(B) for `spec`, writing into `c`. */
export function runMatmul(
  be: Backend,
  a: BufferRef,
  b: BufferRef,
  c: BufferRef,
  spec: MatmulSpec,
  variant: "blocked" | "simple" = matmulVariant(spec),
): void {
  if (spec.batch * spec.m * spec.n === 0) return;
  const bindings = [bind(a, "read"), bind(b, "read"), bind(c, "read_write")];
  if (variant === "blocked") {
    const tile = BLOCK_WG * BLOCK_T;
    be.run(
      { code: matmulBlockedShader(spec), name: "matmul_blocked" },
      bindings,
      [Math.ceil(spec.n / tile), Math.ceil(spec.m / tile), spec.batch],
    );
  } else {
    const { grid, nx } = foldGrid(Math.ceil((spec.batch * spec.m * spec.n) / WG));
    be.run({ code: matmulSimpleShader(spec, nx), name: "matmul_simple" }, bindings, grid);
  }
}
