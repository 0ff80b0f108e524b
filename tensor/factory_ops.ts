/**
 * In-place and factory primitives (re-exported by tensor/ops.ts): fill, assign, region and whole
 * accumulation, the default random generator, random fills and categorical sampling.
 * @module
 */

import { backend } from "../gpu/backend.ts";
import { contiguousStrides, E } from "../gpu/kernel.ts";
import { constant } from "../gpu/constants.ts";
import { Generator, runCategorical, runRandom } from "../gpu/random.ts";
import { runInPlace } from "./lazy.ts";
import type { Tensor } from "./tensor.ts";
import { empty, operand, runPlace } from "./op_helpers.ts";

// ---------------------------------------------------------------- in place and factories

/** Fills `x` in place with a constant (no autograd). */
export function fill_(x: Tensor, value: number): Tensor {
  const c = constant(backend(), value, x.dtype);
  runInPlace(
    ([v]) => v,
    x.shape,
    [{ ref: c, dtype: x.dtype, strides: x.shape.map(() => 0) }],
    x,
    "fill_",
  );
  return x;
}

/** Copies `src` into `dst` in place (same element count; no autograd). */
export function assign_(dst: Tensor, src: Tensor): Tensor {
  if (dst.size !== src.size || dst.dtype !== src.dtype) {
    throw new Error(`assign_: cannot copy ${src.describe()} into ${dst.describe()}`);
  }
  runInPlace(([v]) => v, src.shape, [operand(src)], dst, "assign_");
  return dst;
}

/**
 * `dst[lo + i] += src[i]` in place for the block of `src`'s shape starting at `lo` (f32, same
 * rank; no autograd): the adjoint of {@link slice}, accumulated without a full-size temporary.
 */
export function addRegion_(dst: Tensor, src: Tensor, lo: readonly number[]): Tensor {
  if (dst.ndim !== src.ndim || lo.length !== dst.ndim || dst.dtype !== "f32") {
    throw new Error(`addRegion_: cannot add ${src.describe()} into ${dst.describe()} at [${lo}]`);
  }
  if (src.shape.some((d, i) => lo[i] < 0 || lo[i] + d > dst.shape[i])) {
    throw new Error(`addRegion_: ${src.describe()} at [${lo}] is outside ${dst.describe()}`);
  }
  const st = contiguousStrides(dst.shape);
  const at = lo.reduce((acc, l, d) => acc + l * st[d], 0);
  const a = src.shape.findIndex((d) => d !== 1);
  if (a < 0 || src.shape.every((d, i) => i <= a || d === dst.shape[i])) {
    // The block is contiguous in dst: one map adds src (fused if pending) into it.
    runInPlace(
      ([v]) => E.binary("add", E.out(), v),
      src.shape,
      [operand(src)],
      dst,
      "addRegion_",
      at,
    );
    return dst;
  }
  runPlace(src.refFor("addRegion_"), src.shape, dst.refFor("addRegion_"), st, at, "f32", true);
  return dst;
}

/** `dst += src` in place (same element count; no autograd). Used for gradient accumulation. */
export function accumulate_(dst: Tensor, src: Tensor): Tensor {
  if (dst.size !== src.size) {
    throw new Error(`accumulate_: cannot add ${src.describe()} into ${dst.describe()}`);
  }
  runInPlace(([v]) => E.binary("add", E.out(), v), src.shape, [operand(src)], dst, "accumulate_");
  return dst;
}

/** The default random generator (seed 0 until {@link manualSeed}). */
export const defaultGenerator: Generator = new Generator(0);

/** Seeds the default generator. */
export function manualSeed(seed: number): void {
  defaultGenerator.setState({ seed, counter: 0 });
}

/** A tensor of i.i.d. draws: uniform in [a, b), normal(mean a, std b), or bernoulli(p = a). */
export function random(
  kind: "uniform" | "normal" | "bernoulli",
  shape: readonly number[],
  a: number,
  b: number,
  gen: Generator = defaultGenerator,
): Tensor {
  const out = empty(shape, "f32", kind);
  runRandom(backend(), gen, kind, out.refFor(kind), a, b);
  return out;
}

/**
 * One category (i32) per row of non-negative weights `probs` [rows, k]. With `rowSeeds` (u32 or
 * i32 [rows]), row r draws from its own seed `rowSeeds[r]` (and the generator's stream number), so
 * a row's draw does not depend on its index or on the number of rows.
 */
export function categorical(
  probs: Tensor,
  gen: Generator = defaultGenerator,
  rowSeeds?: Tensor,
): Tensor {
  if (probs.ndim !== 2) {
    throw new Error(`categorical: probs must be [rows, k], got ${probs.describe()}`);
  }
  if (rowSeeds && (rowSeeds.dtype === "f32" || rowSeeds.size !== probs.shape[0])) {
    throw new Error(
      `categorical: rowSeeds must be u32/i32 [${probs.shape[0]}], got ${rowSeeds.describe()}`,
    );
  }
  const out = empty([probs.shape[0]], "i32", "categorical");
  runCategorical(
    backend(),
    gen,
    probs.refFor("categorical"),
    probs.shape[0],
    probs.shape[1],
    out.refFor("categorical"),
    rowSeeds?.refFor("categorical"),
  );
  return out;
}
