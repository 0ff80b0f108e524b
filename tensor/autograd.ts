/**
 * Reverse-mode autodiff: `backward()` sorts the graph topologically (as in micrograd) and applies
 * one gradient rule per primitive from the table below. Rules are written with the same tensor
 * ops, run under `noGrad`, and return one gradient (or null) per input. Every rule is checked
 * against central differences in tests/grad_check.test.ts.
 * @module
 */

import { E } from "../gpu/kernel.ts";
import { lazyMap } from "./lazy.ts";
import * as ops from "./ops.ts";
import { isKnownZero, keep, type Node, noGrad, type Tensor, tidy } from "./tensor.ts";

/**
 * A gradient rule: given dL/dout, the node and the output, return dL/dinput for each input.
 * `needs[i]` says whether input i requires a gradient; rules may skip (return null for) the rest.
 */
/**
 * A gradient rule: the gradients of `node`'s inputs given `g`, the gradient of its output `out`.
 * `into[k]`, when set, is input k's gradient buffer, known to hold zeros: a rule may write input
 * k's gradient straight into it and return null for it (the matmul rule does, saving a kernel
 * that would add a temporary into the buffer).
 */
export type GradRule = (
  g: Tensor,
  node: Node,
  out: Tensor,
  needs: boolean[],
  into: readonly (Tensor | null)[],
) => (Tensor | null)[];

/** The axes of `g` that broadcasting to `g`'s shape added to `shape`. */
function broadcastAxes(g: Tensor, shape: readonly number[]): number[] {
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  return axes;
}

/**
 * {@link unbroadcast} of `g` to `shape`, summed straight into `dst` (a zeroed gradient buffer,
 * see {@link GradRule}) when there is something to sum: then null.
 */
function unbroadcastInto(g: Tensor, shape: readonly number[], dst: Tensor | null): Tensor | null {
  const axes = broadcastAxes(g, shape);
  if (!dst || axes.length === 0 || g.size === 0) return unbroadcast(g, shape);
  ops.sumInto_(dst, g, axes);
  return null;
}

/** Sums `g` over broadcast dims so that it has `shape` (the adjoint of broadcasting). */
export function unbroadcast(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const axes = broadcastAxes(g, shape);
  const s = ops.sum(g, axes, true);
  const r = ops.reshape(s, shape);
  s.dispose();
  return r;
}

const mul = (a: Tensor, b: Tensor) => ops.binary("mul", a, b);
const scale = (a: Tensor, c: number) => ops.scalarOp("mul_scalar", a, c);
const zeroGrad = (n: number) => (): (Tensor | null)[] => new Array(n).fill(null);

/**
 * The rule table, keyed by primitive name. Rules run inside a `tidy` scope, so intermediates they
 * create are freed; only the returned gradients survive.
 */
export const GRAD_RULES: Record<string, GradRule> = {
  // unary
  neg: (g) => [scale(g, -1)],
  exp: (g, _n, out) => [mul(g, out)],
  log: (g, n) => [ops.binary("div", g, n.inputs[0])],
  sqrt: (g, _n, out) => [scale(ops.binary("div", g, out), 0.5)],
  abs: (g, n) => [mul(g, ops.unary("sign", n.inputs[0]))],
  softplus: (g, n) => [mul(g, ops.unary("sigmoid", n.inputs[0]))],
  tanh: (g, _n, out) => {
    const sq = ops.unary("square", out);
    const one = ops.scalarOp("add_scalar", scale(sq, -1), 1);
    return [mul(g, one)];
  },
  sigmoid: (g, _n, out) => {
    const oneMinus = ops.scalarOp("add_scalar", scale(out, -1), 1);
    const d = mul(out, oneMinus);
    return [mul(g, d)];
  },
  relu: (g, n) => [mul(g, ops.scalarOp("step", n.inputs[0], 0))],
  sin: (g, n) => [mul(g, ops.unary("cos", n.inputs[0]))],
  cos: (g, n) => [mul(g, scale(ops.unary("sin", n.inputs[0]), -1))],
  recip: (g, _n, out) => [mul(g, scale(ops.unary("square", out), -1))],
  square: (g, n) => [mul(g, scale(n.inputs[0], 2))],
  sign: zeroGrad(1),
  floor: zeroGrad(1),
  isnan: zeroGrad(1),
  isinf: zeroGrad(1),
  // scalar-parameter
  add_scalar: (g) => [g],
  mul_scalar: (g, n) => [scale(g, n.params.c as number)],
  pow_scalar: (g, n) => {
    const c = n.params.c as number;
    return [mul(g, scale(ops.scalarOp("pow_scalar", n.inputs[0], c - 1), c))];
  },
  leaky_relu: (g, n) => {
    const c = n.params.c as number;
    const slope = ops.scalarOp("add_scalar", scale(ops.scalarOp("step", n.inputs[0], 0), 1 - c), c);
    return [mul(g, slope)];
  },
  clamp_min: (g, n) => [mul(g, ops.scalarOp("step", n.inputs[0], n.params.c as number))],
  clamp_max: (g, n) => {
    const above = ops.scalarOp("step", n.inputs[0], n.params.c as number);
    return [mul(g, ops.scalarOp("add_scalar", scale(above, -1), 1))];
  },
  step: zeroGrad(1),
  // binary
  add: (g, n, _out, needs, into) => [
    needs[0] ? unbroadcastInto(g, n.inputs[0].shape, into[0]) : null,
    needs[1] ? unbroadcastInto(g, n.inputs[1].shape, into[1]) : null,
  ],
  sub: (g, n, _out, needs, into) => [
    needs[0] ? unbroadcastInto(g, n.inputs[0].shape, into[0]) : null,
    needs[1] ? unbroadcastInto(scale(g, -1), n.inputs[1].shape, into[1]) : null,
  ],
  mul: (g, n, _out, needs) => [
    needs[0] ? unbroadcast(mul(g, n.inputs[1]), n.inputs[0].shape) : null,
    needs[1] ? unbroadcast(mul(g, n.inputs[0]), n.inputs[1].shape) : null,
  ],
  div: (g, n, out, needs) => [
    needs[0] ? unbroadcast(ops.binary("div", g, n.inputs[1]), n.inputs[0].shape) : null,
    needs[1]
      ? unbroadcast(scale(ops.binary("div", mul(g, out), n.inputs[1]), -1), n.inputs[1].shape)
      : null,
  ],
  pow: (g, n, out, needs) => {
    const [x, y] = n.inputs;
    const dx = mul(mul(g, y), ops.binary("pow", x, ops.scalarOp("add_scalar", y, -1)));
    const dy = mul(mul(g, out), ops.unary("log", x));
    return [needs[0] ? unbroadcast(dx, x.shape) : null, needs[1] ? unbroadcast(dy, y.shape) : null];
  },
  maximum: (g, n, _out, needs) => {
    const m = ops.binary("ge", n.inputs[0], n.inputs[1]);
    const notM = ops.scalarOp("add_scalar", scale(m, -1), 1);
    return [
      needs[0] ? unbroadcast(mul(g, m), n.inputs[0].shape) : null,
      needs[1] ? unbroadcast(mul(g, notM), n.inputs[1].shape) : null,
    ];
  },
  minimum: (g, n, _out, needs) => {
    const m = ops.binary("le", n.inputs[0], n.inputs[1]);
    const notM = ops.scalarOp("add_scalar", scale(m, -1), 1);
    return [
      needs[0] ? unbroadcast(mul(g, m), n.inputs[0].shape) : null,
      needs[1] ? unbroadcast(mul(g, notM), n.inputs[1].shape) : null,
    ];
  },
  eq: zeroGrad(2),
  ne: zeroGrad(2),
  lt: zeroGrad(2),
  le: zeroGrad(2),
  gt: zeroGrad(2),
  ge: zeroGrad(2),
  where: (g, n, _out, needs) => {
    const [c, a, b] = n.inputs;
    const zero = ops.scalarOp("mul_scalar", g, 0);
    return [
      null,
      needs[1] ? unbroadcast(ops.where(c, g, zero), a.shape) : null,
      needs[2] ? unbroadcast(ops.where(c, zero, g), b.shape) : null,
    ];
  },
  // reductions
  sum: (g, n) => {
    const x = n.inputs[0];
    const axes = n.params.axes as number[];
    const kept = ops.reshape(g, x.shape.map((d, i) => (axes.includes(i) ? 1 : d)));
    return [ops.expand(kept, x.shape)];
  },
  max: (g, n, out) => {
    const x = n.inputs[0];
    const axes = n.params.axes as number[];
    const keptShape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    const mask = ops.binary("eq", x, ops.reshape(out, keptShape));
    const count = ops.sum(mask, axes, true);
    // Ties share the gradient equally.
    return [mul(mask, ops.binary("div", ops.reshape(g, keptShape), count))];
  },
  // matmul
  matmul: (g, n, _out, needs, into) => {
    const [a, b] = n.inputs;
    const { transA, transB } = n.params as { transA: boolean; transB: boolean };
    // Each gradient is a product; it is written straight into a zeroed gradient buffer when it
    // has the input's shape (no batch broadcasting to sum away).
    const product = (k: number, x: Tensor, y: Tensor, tx: boolean, ty: boolean) => {
      const dst = into[k], inp = n.inputs[k];
      const mat = (t: Tensor) => t.shape[t.ndim - 2] * t.shape[t.ndim - 1];
      const full = inp.ndim >= 2 && g.ndim >= 2 && (g.size / mat(g)) * mat(inp) === inp.size;
      if (dst && full && x.ndim >= 2 && y.ndim >= 2) {
        ops.matmulInto_(dst, x, y, tx, ty);
        return null;
      }
      return unbroadcast(ops.matmul(x, y, tx, ty), n.inputs[k].shape);
    };
    const da = !needs[0]
      ? null
      : transA
      ? product(0, b, g, transB, true)
      : product(0, g, b, false, !transB);
    const db = !needs[1]
      ? null
      : transB
      ? product(1, g, a, true, transA)
      : product(1, a, g, !transA, false);
    return [da, db];
  },
  // movement
  reshape: (g, n) => [ops.reshape(g, n.params.from as number[])],
  permute: (g, n) => {
    const perm = n.params.perm as number[];
    const inv = new Array(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [ops.permute(g, inv)];
  },
  expand: (g, n) => [unbroadcast(g, n.params.from as number[])],
  slice: (g, n) => {
    const lo = n.params.lo as number[];
    const from = n.params.from as number[];
    return [ops.pad(g, lo.map((l, d) => [l, from[d] - l - g.shape[d]] as [number, number]))];
  },
  pad: (g, n) => {
    const pads = n.params.pads as [number, number][];
    const x = n.inputs[0];
    return [ops.slice(g, pads.map(([b]) => b), pads.map(([b], d) => b + x.shape[d]))];
  },
  concat: (g, n) => {
    const axis = n.params.axis as number;
    let at = 0;
    return (n.params.sizes as number[]).map((size) => {
      const lo = g.shape.map((_, d) => (d === axis ? at : 0));
      const hi = g.shape.map((s, d) => (d === axis ? at + size : s));
      at += size;
      return ops.slice(g, lo, hi);
    });
  },
  // indexing
  gatherRows: (g, n) => {
    const [table, idx] = n.inputs;
    const flat = ops.reshape(g, [idx.size, table.shape[1]]);
    return [ops.scatterAddRows(flat, idx, n.params.rows as number), null];
  },
  scatterAddRows: (g, n) => {
    const [src, idx] = n.inputs;
    return [ops.reshape(ops.gatherRows(g, idx), src.shape), null];
  },
  pick: (g, n) => [ops.unpick(g, n.inputs[1], n.params.k as number), null],
  unpick: (g, n) => [ops.reshape(ops.pick(g, n.inputs[1]), n.inputs[0].shape), null],
};

/** Graph nodes reachable from `root` through inputs that require grad, inputs first. */
function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const inp = inputs[i];
      if (inp.requiresGrad && !seen.has(inp)) {
        seen.add(inp);
        stack.push([inp, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order;
}

/**
 * The gradient buffer of `x`, when `x` is a leaf (or a reshape of one) whose gradient buffer is
 * known to hold zeros (just zeroed, nothing written since): a view of `x`'s shape, created in the
 * rule's scope. Null otherwise.
 */
function zeroedGradOf(x: Tensor): Tensor | null {
  const leaf = !x.node
    ? x
    : x.node.op === "reshape" && !x.node.inputs[0].node
    ? x.node.inputs[0]
    : null;
  const gb = leaf?.requiresGrad ? leaf.grad : null;
  if (!gb || !isKnownZero(gb) || gb.size !== x.size) return null;
  return gb.view(x.shape, "grad");
}

/**
 * Back-propagates from `root` (a one-element tensor, or any tensor with `grad` of its shape) and
 * accumulates into `.grad` of every leaf with `requiresGrad`. Intermediate gradients are
 * disposed as soon as they are used, so memory stays flat across steps.
 */
export function backward(root: Tensor, grad?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error(
      `backward: ${root.describe()} does not require grad (no input had requiresGrad, or it was ` +
        "computed under noGrad)",
    );
  }
  if (!grad && root.size !== 1) {
    throw new Error(`backward: ${root.describe()} is not a scalar; pass a gradient of its shape`);
  }
  if (grad && (grad.size !== root.size)) {
    throw new Error(`backward: gradient ${grad.describe()} does not match ${root.describe()}`);
  }
  noGrad(() => {
    const order = topoSort(root);
    const grads = new Map<Tensor, Tensor>();
    // Gradients this pass created and nothing else reads: a slice's gradient may be added into
    // them in place (the per-time-step slices of a sequence model: one temporary, not T).
    const owned = new Set<Tensor>();
    // The seed gradient of ones is pending: it folds into the first rules' kernels.
    const one = () => lazyMap(() => E.const(1), root.shape, [], "f32", "backward");
    grads.set(root, grad ? grad.view(root.shape, "backward") : one());
    for (let i = order.length - 1; i >= 0; i--) {
      const t = order[i];
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      if (!t.node) {
        if (t.grad && !t.grad.isDisposed) {
          ops.accumulate_(t.grad, g);
          g.dispose();
        } else {
          t.grad = keep(g.shape.length === t.shape.length ? g : g.view(t.shape, "grad"));
          if (t.grad !== g) g.dispose();
        }
        continue;
      }
      const node = t.node;
      if (node.op === "slice") {
        const inp = node.inputs[0];
        const prev = grads.get(inp);
        if (inp.requiresGrad && prev && owned.has(prev)) {
          ops.addRegion_(prev, g, node.params.lo as number[]);
          g.dispose();
          continue;
        }
      }
      const rule = GRAD_RULES[t.node.op];
      if (!rule) throw new Error(`backward: no gradient rule for primitive '${t.node.op}'`);
      const needs = node.inputs.map((inp) => inp.requiresGrad);
      const inGrads = tidy(() => rule(g, node, t, needs, node.inputs.map(zeroedGradOf)));
      const used = new Set<Tensor>();
      t.node.inputs.forEach((inp, k) => {
        let gi = inGrads[k];
        if (!gi || !inp.requiresGrad) {
          if (gi && gi !== g) gi.dispose();
          return;
        }
        // A rule may hand the same tensor to several inputs (add) or pass g through: alias it.
        if (gi === g || used.has(gi)) gi = gi.view(gi.shape, "grad");
        used.add(gi);
        const prev = grads.get(inp);
        if (prev) {
          const sum = ops.binary("add", prev, gi);
          grads.set(inp, sum);
          owned.add(sum);
          owned.delete(prev);
          prev.dispose();
          gi.dispose();
        } else {
          grads.set(inp, gi);
          // A slice's gradient is a fresh zero-padded tensor (never an alias).
          if (node.op === "slice") owned.add(gi);
        }
      });
      g.dispose();
    }
  });
}
