/**
 * Movement and indexing primitives (re-exported by tensor/ops.ts): reshape, permute, expand,
 * slice, pad, concat, row gather/scatter-add and pick/unpick. Each runs one kernel (or none, for
 * reshape) and records an autograd node.
 * @module
 */

import { backend } from "../gpu/backend.ts";
import { contiguousStrides, E, numel } from "../gpu/kernel.ts";
import { lazyMap, packInto } from "./lazy.ts";
import type { Tensor } from "./tensor.ts";
import {
  broadcastShapes,
  empty,
  normAxis,
  operand,
  record,
  requireF32,
  runFill,
  runPlace,
  zerosLike,
} from "./op_helpers.ts";

// ---------------------------------------------------------------- movement

/** Same data, new shape (no copy). One dim may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const hole = s.indexOf(-1);
  if (hole >= 0) {
    const rest = numel(s.filter((_, i) => i !== hole));
    s[hole] = rest === 0 ? 0 : x.size / rest;
  }
  if (numel(s) !== x.size || s.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`reshape: cannot reshape ${x.describe()} (${x.size} elements) to [${shape}]`);
  }
  const out = x.view(s, "reshape");
  return record(out, "reshape", [x], { from: x.shape });
}

/** Reorders dimensions: output dim i is input dim `perm[i]`. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const p = perm.map((a) => normAxis("permute", a, x.ndim));
  if (p.length !== x.ndim || new Set(p).size !== p.length) {
    throw new Error(
      `permute: [${perm}] is not a permutation of the ${x.ndim} dims of ${x.describe()}`,
    );
  }
  const st = contiguousStrides(x.shape);
  const shape = p.map((a) => x.shape[a]);
  const out = lazyMap(
    ([v]) => v,
    shape,
    [{ tensor: x, dtype: x.dtype, strides: p.map((a) => st[a]) }],
    x.dtype,
    "permute",
  );
  return record(out, "permute", [x], { perm: p });
}

/** Copies `x` broadcast to `shape` (NumPy rules). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const s = broadcastShapes("expand", x.shape, shape);
  if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) {
    throw new Error(`expand: cannot expand ${x.describe()} to [${shape}]`);
  }
  const out = lazyMap(([v]) => v, shape, [operand(x, shape)], x.dtype, "expand");
  return record(out, "expand", [x], { from: x.shape });
}

/** The sub-block `starts[d] <= i < ends[d]` of every dim (negative values count from the end). */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor {
  if (starts.length !== x.ndim || ends.length !== x.ndim) {
    throw new Error(
      `slice: need ${x.ndim} starts and ends for ${x.describe()}, got ${starts.length}/${ends.length}`,
    );
  }
  const lo = starts.map((s, d) => Math.min(Math.max(s < 0 ? s + x.shape[d] : s, 0), x.shape[d]));
  const hi = ends.map((e, d) => Math.min(Math.max(e < 0 ? e + x.shape[d] : e, lo[d]), x.shape[d]));
  const shape = lo.map((l, d) => hi[d] - l);
  const st = contiguousStrides(x.shape);
  const out = lazyMap(
    ([v]) => v,
    shape,
    [{
      tensor: x,
      dtype: x.dtype,
      strides: st,
      offset: lo.reduce((acc, l, d) => acc + l * st[d], 0),
    }],
    x.dtype,
    "slice",
  );
  return record(out, "slice", [x], { lo, from: x.shape });
}

/** Pads with zeros: `pads[d] = [before, after]`. */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[]): Tensor {
  if (pads.length !== x.ndim || pads.some(([a, b]) => a < 0 || b < 0)) {
    throw new Error(`pad: need ${x.ndim} non-negative [before, after] pairs for ${x.describe()}`);
  }
  const shape = x.shape.map((d, i) => d + pads[i][0] + pads[i][1]);
  const out = empty(shape, x.dtype, "pad");
  const st = contiguousStrides(shape);
  const start = pads.reduce((acc, [b], d) => acc + b * st[d], 0);
  const axes = pads.flatMap(([b, e], d) => (b || e ? [d] : []));
  if (axes.length <= 1 && x.shape.slice(0, axes[0] ?? 0).every((d) => d === 1)) {
    // x fills one contiguous block: zeros before it, x, zeros after it, in one kernel.
    // Zero is baked (binds nothing; one value, so one compiled kernel per layout).
    const zero = (n: number) => lazyMap(() => E.const(0, x.dtype), [n], [], x.dtype, "pad");
    const before = zero(start), after = zero(out.size - start - x.size);
    packInto(
      [
        { t: before, outOffset: 0 },
        { t: x, outOffset: start },
        { t: after, outOffset: start + x.size },
      ],
      out.refFor("pad"),
      x.dtype,
    );
    before.dispose();
    after.dispose();
  } else {
    runFill(out.refFor("pad"), x.dtype, 0);
    runPlace(x.refFor("pad"), x.shape, out.refFor("pad"), st, start, x.dtype);
  }
  return record(out, "pad", [x], { pads });
}

/** Joins tensors along `axis` (all other dims must agree). */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error("concat: needs at least one tensor");
  const a = normAxis("concat", axis, xs[0].ndim);
  for (const t of xs) {
    if (t.ndim !== xs[0].ndim || t.shape.some((d, i) => i !== a && d !== xs[0].shape[i])) {
      throw new Error(
        `concat: shapes must agree except on axis ${a}: ${xs.map((t) => `[${t.shape}]`).join(" ")}`,
      );
    }
  }
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((acc, t) => acc + t.shape[a], 0);
  const out = empty(shape, xs[0].dtype, "concat");
  const st = contiguousStrides(shape);
  const starts = xs.map((_t, i) => xs.slice(0, i).reduce((acc, t) => acc + t.shape[a], 0));
  if (xs[0].shape.slice(0, a).every((d) => d === 1)) {
    // Every part's block of the output is contiguous (no dims before `axis` above 1): the parts
    // run their own maps (pending) or copies (computed) into their blocks, packed in one kernel.
    packInto(
      xs.map((t, i) => ({ t, outOffset: starts[i] * st[a] })),
      out.refFor("concat"),
      out.dtype,
    );
  } else {
    xs.forEach((t, i) => {
      runPlace(t.refFor("concat"), t.shape, out.refFor("concat"), st, starts[i] * st[a], t.dtype);
    });
  }
  return record(out, "concat", [...xs], { axis: a, sizes: xs.map((t) => t.shape[a]) });
}

// ---------------------------------------------------------------- indexing

/** Rows of `table` [rows, dim] picked by i32 `idx` (any shape): result [...idx.shape, dim]. */
export function gatherRows(table: Tensor, idx: Tensor): Tensor {
  requireF32("gatherRows", table);
  if (table.ndim !== 2) throw new Error(`gatherRows: table must be 2-D, got ${table.describe()}`);
  if (idx.dtype !== "i32") {
    throw new Error(`gatherRows: indices must be i32, got ${idx.describe()}`);
  }
  const [rows, dim] = table.shape;
  const out = empty([...idx.shape, dim], "f32", "gatherRows");
  if (out.size > 0) {
    backend().run({ kind: "gatherRows", rows, dim, n: idx.size }, [
      table.refFor("gatherRows"),
      idx.refFor("gatherRows"),
      out.refFor("gatherRows"),
    ]);
  }
  return record(out, "gatherRows", [table, idx], { rows });
}

/** Adds rows of `src` [n, dim] into a new zero table [rows, dim] at i32 `idx` [n]. */
export function scatterAddRows(src: Tensor, idx: Tensor, rows: number): Tensor {
  requireF32("scatterAddRows", src);
  const dim = src.shape[src.ndim - 1];
  const n = idx.size;
  if (src.size !== n * dim) {
    throw new Error(`scatterAddRows: ${src.describe()} does not hold ${n} rows of ${dim}`);
  }
  const out = zerosLike([rows, dim]);
  if (n * dim > 0) {
    backend().run({ kind: "scatterAddRows", rows, dim, n }, [
      src.refFor("scatterAddRows"),
      idx.refFor("scatterAddRows"),
      out.refFor("scatterAddRows"),
    ]);
  }
  return record(out, "scatterAddRows", [src, idx], {});
}

/** `x[r, idx[r]]` for x [rows, k] and i32 idx [rows]; out-of-range indices give 0. */
export function pick(x: Tensor, idx: Tensor): Tensor {
  requireF32("pick", x);
  if (x.ndim !== 2 || idx.dtype !== "i32" || idx.size !== x.shape[0]) {
    throw new Error(
      `pick: expects x [rows, k] and i32 idx [rows], got ${x.describe()} and ${idx.describe()}`,
    );
  }
  const out = empty([x.shape[0]], "f32", "pick");
  if (out.size > 0) {
    backend().run({ kind: "pick", rows: x.shape[0], k: x.shape[1] }, [
      x.refFor("pick"),
      idx.refFor("pick"),
      out.refFor("pick"),
    ]);
  }
  return record(out, "pick", [x, idx], { k: x.shape[1] });
}

/** Adjoint of {@link pick}: out [rows, k] with g[r] at column idx[r] and zeros elsewhere. */
export function unpick(g: Tensor, idx: Tensor, k: number): Tensor {
  const rows = g.size;
  const out = empty([rows, k], "f32", "unpick");
  if (out.size > 0) {
    backend().run({ kind: "unpick", rows, k }, [
      g.refFor("unpick"),
      idx.refFor("unpick"),
      out.refFor("unpick"),
    ]);
  }
  return record(out, "unpick", [g, idx], { k });
}
