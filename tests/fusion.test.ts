/**
 * Elementwise fusion (tensor/lazy.ts) against the composition it replaces: every chain is
 * computed fused and with fusion off (one kernel per op), and must agree; on the CPU backend
 * bit for bit (f32 rounding after every op), on WebGPU to rounding. Plus the rules that keep
 * fusion correct: writes never change a pending value, a second reader computes instead of
 * recomputing, reshape keeps fusion, and the size limits.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { E, type PackPart } from "../gpu/kernel.ts";
import { FlatParams } from "../nn/module.ts";
import { MAX_LEAVES, MAX_PACK_BUFFERS, setFusion } from "../tensor/lazy.ts";
import * as ops from "../tensor/ops.ts";
import { tensor } from "../tensor/functional.ts";
import { noGrad, readMany, Tensor, tidy } from "../tensor/tensor.ts";
import { assertClose, randomData, rng, setup } from "./helpers.ts";

await setup();
const exact = backend().info.kind === "cpu";

/** Runs `fn` fused and unfused; returns both results and the kernels each ran. */
async function both(fn: () => Tensor) {
  const run = async (fuse: boolean) => {
    const was = setFusion(fuse);
    try {
      const d0 = backend().stats.dispatches;
      const out = tidy(() => fn());
      const [v] = await readMany([out]);
      out.dispose();
      return { v: Array.from(v), kernels: backend().stats.dispatches - d0 };
    } finally {
      setFusion(was);
    }
  };
  return { fused: await run(true), plain: await run(false) };
}

/**
 * Fused and op-by-op results agree: on the CPU bit for bit when every op has a WebAssembly
 * rendering (`approx`: some op runs in JavaScript, whose sums accumulate in double), else to
 * rounding.
 */
function agree(a: number[], b: number[], what: string, approx = false): void {
  if (exact && !approx) assert.deepEqual(a, b, what);
  else assertClose(a, b, 1e-6, 1e-5, what);
}

const UNARY = ["neg", "exp", "abs", "tanh", "sigmoid", "relu", "sin", "cos", "square"] as const;
const BINARY = ["add", "sub", "mul", "maximum", "minimum", "lt", "ge"] as const;

Deno.test("fusion: random elementwise chains (and reductions of them) equal the op-by-op composition", async () => {
  const r = rng(7);
  for (let trial = 0; trial < 40; trial++) {
    const shapes = [[3, 4], [4], [3, 1], [1, 4], [1]];
    const data = shapes.map((s, i) => randomData(s.reduce((a, b) => a * b, 1), 100 * trial + i));
    // The chain is drawn once, then built twice (fused and not).
    const chain = Array.from({ length: 2 + Math.floor(r() * 8) }, () => [r(), r(), r()]);
    const jsOnly = chain.some(([pick, u]) =>
      pick < 0.4 && ["sin", "cos"].includes(UNARY[Math.floor(u * UNARY.length)])
    );
    const { fused, plain } = await both(() => {
      const xs = shapes.map((s, i) => tensor(data[i], s));
      let acc = xs[0];
      for (const [pick, u, v] of chain) {
        if (pick < 0.4) acc = ops.unary(UNARY[Math.floor(u * UNARY.length)], acc);
        else if (pick < 0.8) {
          const other = xs[Math.floor(v * xs.length)];
          acc = ops.binary(BINARY[Math.floor(u * BINARY.length)], acc, other);
        } else if (pick < 0.9) acc = ops.scalarOp("mul_scalar", acc, u * 2 - 1);
        else acc = ops.where(ops.binary("gt", acc, xs[1]), acc, xs[2]);
      }
      // Every third chain ends in a reduction (the chain becomes its prologue).
      if (trial % 3 === 1) return acc.sum(trial % 2);
      if (trial % 3 === 2) return ops.max(acc, 1);
      return acc;
    });
    agree(fused.v, plain.v, `trial ${trial}`, jsOnly);
    assert.ok(fused.kernels <= plain.kernels, `trial ${trial}: fusion never adds kernels`);
  }
});

Deno.test("fusion: a chain is one kernel; a value read twice is computed once", async () => {
  const x = tensor(randomData(64, 1), [8, 8]);
  const y = tensor(randomData(8, 2), [8]);
  const { fused, plain } = await both(() => x.mul(y).add(1).tanh().mul(2).sigmoid());
  agree(fused.v, plain.v, "chain");
  assert.equal(fused.kernels, 1);
  assert.equal(plain.kernels, 5);
  const shared = await both(() => {
    const e = x.exp();
    return e.add(e.mul(3)).add(e.neg());
  });
  agree(shared.fused.v, shared.plain.v, "shared");
  // exp is inlined into its first reader and computed for the second: at most 3 kernels.
  assert.ok(shared.fused.kernels <= 3, `${shared.fused.kernels} kernels`);
  x.dispose();
  y.dispose();
});

Deno.test("fusion: an in-place write never changes a pending value", async () => {
  const x = tensor([1, 2, 3, 4]);
  const doubled = x.mul(2);
  const viaView = x.view([2, 2]).add(10);
  ops.fill_(x, 0);
  assert.deepEqual(Array.from(await doubled.data()), [2, 4, 6, 8]);
  assert.deepEqual(Array.from(await viaView.data()), [11, 12, 13, 14]);
  const acc = tensor([1, 1, 1, 1]);
  const twice = acc.mul(2);
  ops.accumulate_(acc, twice); // reads acc, writes acc: must not fuse into one kernel
  assert.deepEqual(Array.from(await acc.data()), [3, 3, 3, 3]);
  const w = tensor([5, 6]);
  const neg = w.neg();
  backend().write(w.storageFor("t"), new Float32Array([0, 0]));
  assert.deepEqual(Array.from(await neg.data()), [-5, -6]);
  for (const t of [x, doubled, viaView, acc, twice, w, neg]) t.dispose();
});

Deno.test("fusion: reshape keeps a contiguous chain pending; gradients flow through fused ops", async () => {
  const x = tensor(randomData(12, 3), [3, 4]).requiresGrad_();
  const d0 = backend().stats.dispatches;
  const y = x.mul(3).reshape([12]).exp().reshape([2, 6]).sum();
  await y.item();
  assert.equal(backend().stats.dispatches - d0, 1, "one reduction with the chain as its prologue");
  y.backward();
  const g = Array.from(await x.grad!.data());
  const xv = await x.data();
  assertClose(g, Array.from(xv, (v) => 3 * Math.exp(3 * v)), 1e-4, 1e-4, "d/dx sum(exp(3x))");
  x.dispose();
  y.dispose();
});

Deno.test("fusion: at most MAX_LEAVES inputs per kernel", async () => {
  const xs = Array.from({ length: MAX_LEAVES + 4 }, (_, i) => tensor(randomData(16, 10 + i)));
  const { fused, plain } = await both(() => xs.reduce((a, b) => a.add(b)));
  agree(fused.v, plain.v, "sum of many");
  assert.ok(fused.kernels >= 2 && fused.kernels < plain.kernels, `${fused.kernels} kernels`);
  for (const t of xs) t.dispose();
});

Deno.test("fusion: pending tensors hold their inputs and free them when disposed", () => {
  const be = backend();
  noGrad(() => {
    const live0 = be.stats.liveStorages;
    const x = tensor(randomData(32, 5));
    const e = x.exp();
    const y = e.neg();
    x.dispose();
    e.dispose();
    assert.equal(be.stats.liveStorages, live0 + 1, "x's memory lives while y is pending");
    y.dispose();
    assert.equal(be.stats.liveStorages, live0, "all freed");
  });
});

Deno.test("backward: the gradients of many slices of one tensor add up in one buffer", async () => {
  const data = randomData(4 * 10 * 3, 21);
  const x = tensor(data, [4, 10, 3]).requiresGrad_();
  const w = randomData(10, 22);
  // sum_t w[t] * sum(x[:, t, :]^2), through ten slices (a sequence model's per-step reads)
  let loss = ops.slice(x, [0, 0, 0], [4, 1, 3]).square().sum().mul(w[0]);
  for (let t = 1; t < 10; t++) {
    loss = loss.add(ops.slice(x, [0, t, 0], [4, t + 1, 3]).square().sum().mul(w[t]));
  }
  // and one more read of the whole tensor, so the slices' sum meets another gradient
  loss = loss.add(x.sum());
  loss.backward();
  const g = await x.grad!.data();
  const want = Array.from(data, (v, i) => 2 * w[Math.floor(i / 3) % 10] * v + 1);
  assertClose(Array.from(g), want, 1e-5, 1e-4, "grad");
  x.dispose();
  loss.dispose();
});

Deno.test("fusion: concat computes pending parts into their blocks (packed in one kernel), equal to map + copy", async () => {
  // Parts of sizes 1, 3, 4, 8 and 5 along axis 0 (offsets 0, 1, 4, 8, 16: unaligned and vec4
  // aligned), a realized part between pending ones, an i32 part, and a part along axis 1 of a
  // [1, n] layout; plus a part read twice (its second use must not lose the value).
  const data = [1, 3, 4, 8, 5].map((n, i) => randomData(n, 40 + i));
  const build = () => {
    const xs = data.map((d) => tensor(d, [d.length]));
    const shared = ops.unary("exp", xs[1]);
    const parts = [
      ops.scalarOp("mul_scalar", xs[0], 3),
      shared,
      ops.unary("tanh", xs[2]).add(xs[2]),
      xs[3],
      ops.binary("maximum", xs[4], ops.unary("neg", xs[4])),
    ];
    const a = ops.concat(parts, 0);
    const b = ops.concat([ops.unary("abs", xs[0]).reshape([1, 1]), xs[2].reshape([1, 4])], 1);
    return ops.concat([a, shared.add(1), b.reshape([5])], 0);
  };
  const { fused, plain } = await both(build);
  agree(fused.v, plain.v, "concat of pending parts");
  assert.ok(fused.kernels < plain.kernels, `${fused.kernels} kernels fused vs ${plain.kernels}`);
  const ints = await both(() => {
    const i = tensor([1, 2, 3], [3], "i32");
    return ops.concat([tensor([2.5, 4.5, -6.5], [3]).cast("i32"), i], 0).cast("f32");
  });
  assert.deepEqual(ints.fused.v, [2, 4, -6, 1, 2, 3]);
  assert.deepEqual(ints.plain.v, ints.fused.v);
  // Gradients through a concat of pending parts equal the unfused ones.
  const grads = async (fuse: boolean) => {
    const was = setFusion(fuse);
    try {
      const x = tensor(data[3], [8]);
      x.requiresGrad = true;
      tidy(() => {
        const y = ops.concat([ops.unary("tanh", x), x.mul(x), ops.unary("sigmoid", x)], 0);
        y.mul(tensor(randomData(24, 9), [24])).sum().backward();
      });
      const [g] = await readMany([x.grad!]);
      x.grad!.dispose();
      x.dispose();
      return Array.from(g);
    } finally {
      setFusion(was);
    }
  };
  agree(await grads(true), await grads(false), "concat gradients");
});

Deno.test("pack: one kernel runs several maps, each into its block, equal to the maps run alone", async () => {
  const be = backend();
  const a = tensor(randomData(12, 61), [3, 4]);
  const b = tensor(randomData(5, 62), [5]);
  const i = tensor([3, -1, 7], [3], "i32");
  const parts: PackPart[] = [
    // exp of a's transpose (strided), b * b[2] (one buffer bound once, read twice), an i32 cast
    // from an element offset, a constant, and a part that reads the output's current value.
    {
      expr: E.unary("exp", E.in(0)),
      shape: [4, 3],
      inputs: [{ dtype: "f32", strides: [1, 4] }],
      bind: [0],
      outOffset: 0,
    },
    {
      expr: E.binary("mul", E.in(0), E.in(1)),
      shape: [5],
      inputs: [{ dtype: "f32", strides: [1] }, { dtype: "f32", strides: [0], offset: 2 }],
      bind: [1, 1],
      outOffset: 12,
    },
    {
      expr: E.cast("f32", E.in(0)),
      shape: [2],
      inputs: [{ dtype: "i32", strides: [1], offset: 1 }],
      bind: [2],
      outOffset: 17,
    },
    { expr: E.const(0.5), shape: [3], inputs: [], bind: [], outOffset: 19 },
    {
      expr: E.binary("add", E.out(), E.in(0)),
      shape: [2],
      inputs: [{ dtype: "f32", strides: [1] }],
      bind: [1],
      outOffset: 22,
    },
  ];
  const refs = [a.refFor("t"), b.refFor("t"), i.refFor("t")];
  const packed = tensor(new Float32Array(24).fill(1), [24]);
  const alone = tensor(new Float32Array(24).fill(1), [24]);
  const d0 = be.stats.dispatches;
  be.run({ kind: "pack", out: "f32", buffers: ["f32", "f32", "i32"], parts }, [
    ...refs,
    packed.refFor("t"),
  ]);
  assert.equal(be.stats.dispatches - d0, 1);
  for (const p of parts) {
    be.run(
      {
        kind: "map",
        expr: p.expr,
        shape: p.shape,
        inputs: p.inputs,
        out: "f32",
        outOffset: p.outOffset,
      },
      [...p.bind.map((k) => refs[k]), alone.refFor("t")],
    );
  }
  const [x, y, av, bv] = await readMany([packed, alone, a, b]);
  assert.deepEqual(Array.from(x), Array.from(y));
  assert.deepEqual(Array.from(x.subarray(17)), [
    -1,
    7,
    0.5,
    0.5,
    0.5,
    Math.fround(1 + bv[0]),
    Math.fround(1 + bv[1]),
  ]);
  assertClose(Array.from(x.subarray(0, 3)), [0, 4, 8].map((k) => Math.exp(av[k])), 1e-5);
  for (const t of [a, b, i, packed, alone]) t.dispose();
});

Deno.test("pack: a concat binding more than MAX_PACK_BUFFERS buffers splits into kernels; pad is one kernel", async () => {
  const n = MAX_PACK_BUFFERS + 3;
  const data = Array.from({ length: n }, (_, k) => randomData(k + 1, 70 + k));
  const xs = data.map((d) => tensor(d, [d.length]));
  const be = backend();
  let d0 = be.stats.dispatches;
  const c = ops.concat(xs, 0);
  assert.equal(be.stats.dispatches - d0, 2);
  const x = tensor(randomData(6, 80), [1, 6, 1]);
  d0 = be.stats.dispatches;
  const p = ops.pad(ops.unary("tanh", x), [[0, 0], [2, 3], [0, 0]]);
  assert.equal(be.stats.dispatches - d0, 1);
  const [cv, pv, xv] = await readMany([c, p, x]);
  assert.deepEqual(Array.from(cv), data.flatMap((d) => Array.from(d)));
  assert.deepEqual(Array.from(pv.subarray(0, 2)), [0, 0]);
  assert.deepEqual(Array.from(pv.subarray(8)), [0, 0, 0]);
  assertClose(Array.from(pv.subarray(2, 8)), Array.from(xv, Math.tanh), 1e-5);
  for (const t of [...xs, c, x, p]) t.dispose();
});

Deno.test("fusion: a write to one region of a buffer computes only the pending tensors that read it", async () => {
  const be = backend();
  const data = randomData(128, 90);
  const whole = tensor(data, [128]);
  const s = whole.storageFor("test");
  be.retain(s);
  const lo = new Tensor(s, [64], "f32", 0, "lo");
  be.retain(s);
  const hi = new Tensor(s, [64], "f32", 256, "hi");
  const expLo = ops.unary("exp", lo);
  const expHi = ops.unary("exp", hi);
  ops.fill_(hi, 0); // writes bytes [256, 512) only
  assert.ok(expLo.pendingMap !== null, "a reader of the other region stays pending");
  assert.equal(expHi.pendingMap, null, "a reader of the written region is computed first");
  const [a, b, w] = await readMany([expLo, expHi, whole]);
  assertClose(Array.from(a), Array.from(data.subarray(0, 64), Math.exp), 1e-5);
  assertClose(Array.from(b), Array.from(data.subarray(64), Math.exp), 1e-5);
  assert.deepEqual(Array.from(w.subarray(64)), new Array(64).fill(0));
  for (const t of [whole, lo, hi, expLo, expHi]) t.dispose();
});

Deno.test("backward: gradients written straight into zeroed gradient buffers equal the added ones", async () => {
  // W is read by two products, b by a broadcast add, V through a reshape (as a conv weight): the
  // first gradient of each is written into its zeroed buffer, later ones are added.
  const x = tensor(randomData(12, 101), [4, 3]);
  const r = [102, 103, 104].map((s) => tensor(randomData(20, s), [4, 5]));
  const params: [string, Tensor][] = [
    ["W", tensor(randomData(15, 105), [3, 5])],
    ["b", tensor(randomData(5, 106), [5])],
    ["V", tensor(randomData(15, 107), [15])],
  ];
  for (const [, t] of params) t.requiresGrad = true;
  const flat = new FlatParams(params);
  const [W, b, V] = flat.params;
  const backwardOnce = () =>
    tidy(() => {
      const y = ops.matmul(x, W);
      y.add(b).mul(r[0]).sum().add(y.mul(r[1]).sum())
        .add(ops.matmul(x, V.reshape([3, 5])).mul(r[2]).sum()).backward();
    });
  const grads = async () => Array.from(await flat.grad.data());
  const be = backend();
  flat.zeroGrad();
  let d0 = be.stats.dispatches;
  backwardOnce();
  const written = be.stats.dispatches - d0;
  const g1 = await grads();
  // The same gradients added into zeros that are not known to be zero (filled by hand).
  ops.fill_(flat.grad, 0);
  d0 = be.stats.dispatches;
  backwardOnce();
  const added = be.stats.dispatches - d0;
  const g2 = await grads();
  assert.ok(g1.some((v) => v !== 0), "gradients were computed");
  if (exact) assert.deepEqual(g1, g2);
  else assertClose(g1, g2, 1e-5, 1e-5);
  assert.ok(written < added, `${written} kernels written vs ${added} added`);
  // After the first write the buffer is no longer zero: a second backward adds.
  backwardOnce();
  assertClose(await grads(), g1.map((v) => 2 * v), 1e-5, 1e-5);
  flat.dispose();
  for (const t of [x, ...r]) t.dispose();
});
