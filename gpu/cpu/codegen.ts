/**
 * Renders a {@link KernelSpec} into a JavaScript function over the CPU backend's memory: shapes,
 * strides and geometry are baked into the generated text as constants (as the WGSL renderer
 * does), so V8 compiles tight typed-array loops. The CPU backend caches the compiled function
 * under the spec's key. Large products do not come here: gpu/cpu/gemm.ts runs them in WebAssembly.
 *
 * Every generated function has the signature `(F, I, U, o)`: Float32Array, Int32Array and
 * Uint32Array views of the whole memory, and the element offsets of the spec's buffers in order.
 * f32 arithmetic is rounded to f32 after every op (`Math.fround`), so a fused expression gives
 * the same bits as the chain of single ops it replaces.
 * @module
 */

import { colCols, colRows, contiguousStrides, type KernelSpec } from "../kernel.ts";
import { H, HELPERS } from "./codegen_expr.ts";
import {
  adamSource,
  categoricalSource,
  col2imSource,
  im2colSource,
  lstmStepSource,
  mapSource,
  matmulSource,
  maxPoolBackwardSource,
  maxPoolSource,
  placeSource,
  randomSource,
  reduceSource,
  sgdSource,
} from "./codegen_families.ts";

// The expression rendering (codegen_expr.ts) and the per-family sources (codegen_families.ts)
// live in their own files; the two public names of codegen_expr.ts are re-exported from here.
export { exprStatements, HELPERS } from "./codegen_expr.ts";

/** A compiled CPU kernel: views of the memory, then the element offsets of the buffers. */
export type CpuKernel = (F: Float32Array, I: Int32Array, U: Uint32Array, o: Int32Array) => void;

/** The JavaScript body of `spec`'s kernel (the parameters are `F, I, U, o` and the helpers). */
export function kernelSource(spec: KernelSpec): string {
  switch (spec.kind) {
    case "map":
      return mapSource(spec);
    case "place":
      return placeSource(spec);
    case "pack":
      throw new Error("kernelSource: a pack runs as its parts' maps (CpuBackend)");
    case "reduce":
      return reduceSource(spec);
    case "matmul":
      return matmulSource(spec);
    case "im2col":
      return im2colSource(spec);
    case "col2im":
      return col2imSource(spec);
    case "maxPool2d":
      return maxPoolSource(spec);
    case "maxPool2dBackward":
      return maxPoolBackwardSource(spec);
    case "gatherRows":
      return `const t = o[0], idx = o[1], out = o[2];
for (let r = 0; r < ${spec.n}; r++) {
  const row = I[idx + r], dst = out + r * ${spec.dim};
  if (row >= 0 && row < ${spec.rows}) F.copyWithin(dst, t + row * ${spec.dim}, t + (row + 1) * ${spec.dim});
  else F.fill(0, dst, dst + ${spec.dim});
}`;
    case "scatterAddRows":
      return `const src = o[0], idx = o[1], t = o[2];
for (let r = 0; r < ${spec.n}; r++) {
  const row = I[idx + r];
  if (row < 0 || row >= ${spec.rows}) continue;
  const s = src + r * ${spec.dim}, d = t + row * ${spec.dim};
  for (let j = 0; j < ${spec.dim}; j++) F[d + j] = fr(F[d + j] + F[s + j]);
}`;
    case "pick":
      return `const x = o[0], idx = o[1], out = o[2];
for (let r = 0; r < ${spec.rows}; r++) {
  const c = I[idx + r];
  F[out + r] = c >= 0 && c < ${spec.k} ? F[x + r * ${spec.k} + c] : 0;
}`;
    case "unpick":
      return `const g = o[0], idx = o[1], out = o[2];
F.fill(0, out, out + ${spec.rows * spec.k});
for (let r = 0; r < ${spec.rows}; r++) {
  const c = I[idx + r];
  if (c >= 0 && c < ${spec.k}) F[out + r * ${spec.k} + c] = F[g + r];
}`;
    case "adam":
      return adamSource(spec);
    case "sgd":
      return sgdSource(spec);
    case "advance":
      return `F[o[0] + ${spec.slot}] += 1;`;
    case "norm":
      return `const x = o[0] + ${spec.start};
let acc = 0;
for (let i = 0; i < ${spec.n}; i++) { const g = F[x + i]; acc += g * g; }
F[o[1] + ${spec.outIndex}] = Math.sqrt(acc);`;
    case "clipScale":
      return `const total = F[o[0]], g = o[1] + ${spec.start};
const bad = total !== total || total === Infinity || total === -Infinity;
const coef = bad ? NaN : fr(Math.min(fr(${Math.fround(spec.maxNorm)} / fr(total + 1e-6)), 1));
for (let i = 0; i < ${spec.n}; i++) F[g + i] = fr(F[g + i] * coef);`;
    case "random":
      return randomSource(spec);
    case "categorical":
      return categoricalSource(spec);
    case "lstmStep":
      return lstmStepSource(spec);
  }
}

/** Compiles `spec` into a {@link CpuKernel}. */
export function compileKernel(spec: KernelSpec): CpuKernel {
  const body = kernelSource(spec);
  let make: (...helpers: unknown[]) => CpuKernel;
  try {
    make = new Function(
      ...H,
      `"use strict";\nreturn function kernel(F, I, U, o) {\n${body}\n};`,
    ) as (
      ...helpers: unknown[]
    ) => CpuKernel;
  } catch (err) {
    const numbered = body.split("\n").map((l, i) => `${String(i + 1).padStart(4)}| ${l}`);
    throw new Error(
      `CPU kernel '${spec.kind}' failed to compile: ${(err as Error).message}\n--- source ---\n` +
        numbered.join("\n"),
    );
  }
  return make(...H.map((h) => HELPERS[h as keyof typeof HELPERS]));
}

/** Rows and columns of im2col output (re-exported for the backend's size checks). */
export { colCols, colRows, contiguousStrides };
