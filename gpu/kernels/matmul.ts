/**
 * Host side of matmul: picks the register-blocked kernel or the one-thread-per-output kernel.
 * @module
 */

import type { Backend } from "../backend.ts";
import { foldGrid, WG } from "../shaders/common.ts";
import {
  type BlockConfig,
  blockTile,
  LARGE_BLOCK,
  matmulBlockedShader,
  matmulSimpleShader,
  type MatmulSpec,
  SMALL_BLOCK,
} from "../shaders/matmul.ts";
import { bind, type BufferRef } from "./buffer_ref.ts";

/** Chooses the kernel variant for a product (exported for benchmarks and tests). */
export function matmulVariant(s: MatmulSpec): "blocked" | "simple" {
  // Thin products (a dimension below 8) and small ones run one thread per output; a small output
  // with a long contraction (a conv weight gradient: 64x25 with k = 12544) still pays off blocked.
  if (s.m < 8 || s.n < 8) return "simple";
  return s.m * s.n >= 2048 || s.k >= 256 ? "blocked" : "simple";
}

/** Chooses the blocked kernel's tile: large tiles once there are enough of them to share out. */
export function chooseBlock(s: MatmulSpec): BlockConfig {
  return s.batch * s.m * s.n >= 128 * 128 && s.m >= 64 && s.n >= 64 ? LARGE_BLOCK : SMALL_BLOCK;
}

/** Runs C = op(A) @ op(B) for `spec`, writing into `c`. */
export function runMatmul(
  be: Backend,
  a: BufferRef,
  b: BufferRef,
  c: BufferRef,
  spec: MatmulSpec,
  variant: "blocked" | "simple" = matmulVariant(spec),
  block: BlockConfig = chooseBlock(spec),
): void {
  if (spec.batch * spec.m * spec.n === 0) return;
  const bindings = [bind(a, "read"), bind(b, "read"), bind(c, "read_write")];
  if (variant === "blocked") {
    const [tn, tm] = blockTile(block);
    be.run(
      { code: matmulBlockedShader(spec, block), name: "matmul_blocked" },
      bindings,
      [Math.ceil(spec.n / tn), Math.ceil(spec.m / tm), spec.batch],
    );
  } else {
    const { grid, nx } = foldGrid(Math.ceil((spec.batch * spec.m * spec.n) / WG));
    be.run({ code: matmulSimpleShader(spec, nx), name: "matmul_simple" }, bindings, grid);
  }
}
