/**
 * Losses against plain-TypeScript references, gradients by central differences, and the L1 norm
 * over a flat-parameter range (value and gradient landing in the flat gradient buffer).
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany, tidy } from "../tensor/tensor.ts";
import { FlatParams } from "../nn/module.ts";
import { Linear, Sequential } from "../nn/layers.ts";
import { bceWithLogits, crossEntropy, l1Norm, l1NormOf, mse, nll } from "../nn/losses.ts";
import { assertClose, gradCheck, type GradInput, randomData, setup } from "./helpers.ts";

await setup();

const inp = (shape: number[], seed: number, lo = -1, hi = 1): GradInput => ({
  data: randomData(shape.reduce((a, b) => a * b, 1), seed, lo, hi),
  shape,
});
const ints = (values: number[], shape = [values.length]): GradInput => ({
  data: Int32Array.from(values),
  shape,
  dtype: "i32",
});

Deno.test("mse: value (mean, sum, none) and gradient", async () => {
  const p = randomData(6, 1);
  const t = randomData(6, 2);
  const sq = Array.from(p, (v, i) => (v - t[i]) ** 2);
  const out = await readMany(tidy(() => {
    const [a, b] = [tensor(p, [2, 3]), tensor(t, [2, 3])];
    return [mse(a, b), mse(a, b, "sum"), mse(a, b, "none")];
  }));
  const sum = sq.reduce((a, b) => a + b, 0);
  assertClose(out[0], [sum / 6], 1e-6, 1e-5, "mean");
  assertClose(out[1], [sum], 1e-6, 1e-5, "sum");
  assertClose(out[2], sq, 1e-6, 1e-5, "none");
  assert.throws(() => mse(tensor([1, 2]), tensor([1, 2, 3])), /same shape/);
  await gradCheck("mse", (a, b) => mse(a, b), [inp([2, 3], 3), inp([2, 3], 4)]);
});

Deno.test("bceWithLogits: stable for large |x|; gradient sigmoid(x) - y, also at x = 0", async () => {
  const x = [-60, -3, -0.5, 0, 0.5, 3, 60, 0];
  const y = [0, 1, 0.3, 1, 0, 1, 0, 0];
  const ref = x.map((v, i) => Math.max(v, 0) - v * y[i] + Math.log1p(Math.exp(-Math.abs(v))));
  const xt = tensor(x).requiresGrad_();
  const loss = bceWithLogits(xt, tensor(y));
  loss.backward();
  const [none] = await readMany(tidy(() => [bceWithLogits(xt, tensor(y), "none")]));
  const [mean, grad] = await readMany([loss, xt.grad!]);
  assertClose(none, ref, 1e-6, 1e-5, "values");
  assertClose(mean, [ref.reduce((a, b) => a + b, 0) / x.length], 1e-6, 1e-5, "mean");
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  assertClose(grad, x.map((v, i) => (sig(v) - y[i]) / x.length), 1e-7, 1e-5, "gradient");
  await gradCheck("bceWithLogits", (a, b) => bceWithLogits(a, b), [
    inp([3, 4], 5, -4, 4),
    inp([3, 4], 6, 0, 1),
  ]);
});

/** Host cross-entropy over rows with an ignore index; returns per-row losses and the mean. */
function ceRef(logits: ArrayLike<number>, k: number, target: number[], ignore: number) {
  const rows: number[] = [];
  let sum = 0;
  let count = 0;
  target.forEach((t, r) => {
    const row = Array.from({ length: k }, (_, j) => logits[r * k + j]);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
    const l = t === ignore ? 0 : lse - row[t];
    rows.push(l);
    if (t !== ignore) {
      sum += l;
      count++;
    }
  });
  return { rows, mean: sum / count, sum };
}

Deno.test("crossEntropy: mean over non-ignored rows, default and in-range ignore index", async () => {
  const k = 4;
  const logits = randomData(5 * k, 7, -3, 3);
  for (const [ignore, target] of [[-100, [0, 3, -100, 2, 1]], [1, [0, 1, 3, 1, 2]]] as const) {
    const ref = ceRef(logits, k, [...target], ignore);
    const out = await readMany(tidy(() => {
      const l = tensor(logits, [5, k]);
      const t = tensor(new Int32Array(target));
      return [
        crossEntropy(l, t, { ignoreIndex: ignore }),
        crossEntropy(l, t, { ignoreIndex: ignore, reduction: "sum" }),
        crossEntropy(l, t, { ignoreIndex: ignore, reduction: "none" }),
        nll(l.logSoftmax(-1), t, { ignoreIndex: ignore }),
      ];
    }));
    assertClose(out[0], [ref.mean], 1e-6, 1e-5, `mean, ignore ${ignore}`);
    assertClose(out[1], [ref.sum], 1e-5, 1e-5, `sum, ignore ${ignore}`);
    assertClose(out[2], ref.rows, 1e-6, 1e-5, `none, ignore ${ignore}`);
    assertClose(out[3], [ref.mean], 1e-6, 1e-5, `nll, ignore ${ignore}`);
  }
});

Deno.test("crossEntropy: [..., K] logits, every row ignored gives 0, bad targets are rejected", async () => {
  const logits = randomData(2 * 3 * 5, 8, -2, 2);
  const target = [4, 0, 2, 1, 3, 3];
  const ref = ceRef(logits, 5, target, -100);
  const [three, allIgnored] = await readMany(tidy(() => [
    crossEntropy(tensor(logits, [2, 3, 5]), tensor(new Int32Array(target), [2, 3])),
    crossEntropy(tensor(logits, [6, 5]), tensor(new Int32Array(6).fill(2)), { ignoreIndex: 2 }),
  ]));
  assertClose(three, [ref.mean], 1e-6, 1e-5, "3-D logits");
  assertClose(allIgnored, [0], 0, 0, "all ignored"); // may be -0
  assert.throws(
    () => crossEntropy(tensor(logits, [6, 5]), tensor([1, 2, 3, 4, 0, 1])),
    /i32 targets/,
  );
});

Deno.test("grad: crossEntropy and nll with an ignored row", async () => {
  await gradCheck(
    "crossEntropy",
    (l, t) => crossEntropy(l, t, { ignoreIndex: 3 }),
    [inp([4, 5], 9, -2, 2), ints([2, 3, 0, 4])],
  );
  await gradCheck("nll", (l, t) => nll(l, t), [inp([3, 4], 10, -2, 0), ints([1, -100, 3])]);
});

Deno.test("l1Norm: one reduction over a flat range; gradient sign(w) lands in the flat grads", async () => {
  const net = new Sequential(new Linear(3, 2), new Linear(2, 1));
  const flat = new FlatParams(net.namedParameters(), { A: ["0."], B: ["1."] });
  const [all, a, b, list, ...ps] = await readMany(tidy(() => [
    l1Norm(flat),
    l1Norm(flat, "A"),
    l1Norm(flat, "B"),
    l1NormOf(net.parameters()),
    ...flat.params,
  ]));
  const abs = (ts: ArrayLike<number>[]) =>
    ts.reduce((s, t) => s + Array.from(t).reduce((x, v) => x + Math.abs(v), 0), 0);
  assertClose(all, [abs(ps)], 1e-6, 1e-5, "all");
  assertClose(a, [abs(ps.slice(0, 2))], 1e-6, 1e-5, "group A");
  assertClose(b, [abs(ps.slice(2))], 1e-6, 1e-5, "group B");
  assertClose(list, [abs(ps)], 1e-6, 1e-5, "list");
  // Gradient: sign(w) for every parameter, into the flat gradient buffer (views of it).
  flat.zeroGrad();
  tidy(() => l1Norm(flat, "A").mul(0.5).backward());
  const grads = await readMany([...flat.params.map((p) => p.grad!), flat.grad]);
  grads.slice(0, 2).forEach((g, i) =>
    assertClose(g, Array.from(ps[i], (v) => 0.5 * Math.sign(v)), 0, 0, `grad ${i}`)
  );
  grads.slice(2, 4).forEach((g, i) =>
    assert.ok(g.every((v) => v === 0), `group B grad ${i} untouched`)
  );
  const total = Array.from(grads[4]).reduce((x, v) => x + Math.abs(v), 0);
  assertClose([total], [0.5 * 8], 1e-6, 0, "padding gets no gradient"); // 8 parameters in group A
  flat.dispose();
});

Deno.test("l1Norm: combined with a data loss, gradients accumulate in the same flat buffer", async () => {
  const net = new Linear(3, 2);
  const flat = new FlatParams(net.namedParameters());
  const x = tensor(randomData(6, 11), [2, 3]);
  const y = tensor(randomData(4, 12), [2, 2]);
  const gradsOf = async (withL1: boolean) => {
    flat.zeroGrad();
    tidy(() => {
      const data = mse(net.forward(x), y);
      (withL1 ? data.add(l1Norm(flat).mul(0.1)) : data).backward();
    });
    return (await readMany(flat.params.map((p) => p.grad!))).map((g) => Array.from(g));
  };
  const plain = await gradsOf(false);
  const both = await gradsOf(true);
  const ps = await readMany(flat.params);
  plain.forEach((g, i) =>
    assertClose(both[i], g.map((v, j) => v + 0.1 * Math.sign(ps[i][j])), 1e-6, 1e-5, `param ${i}`)
  );
  for (const t of [x, y]) t.dispose();
  flat.dispose();
});

Deno.test("grad: l1NormOf", async () => {
  await gradCheck("l1NormOf", (a, b) => l1NormOf([a, b]), [inp([2, 3], 13, -1, 1), inp([4], 14)], {
    eps: 1e-3,
  });
});

Deno.test("crossEntropy (logsumexp - picked logit) equals nll(logSoftmax): values and gradients, ignored rows, every reduction", async () => {
  const exact = backend().info.kind === "cpu";
  const data = randomData(6 * 7 * 11, 31).map((v, i) => (i % 13 === 0 ? v * 40 : v * 3));
  // Every seventh row ignored (-100); the rest spread over the 11 classes.
  const labels = Array.from({ length: 42 }, (_, i) => (i % 7 === 1 ? -100 : (i * 5) % 11));
  const target = tensor(labels, [6, 7], "i32");
  for (const reduction of ["mean", "sum", "none"] as const) {
    const run = async (fused: boolean) => {
      const x = tensor(data, [6, 7, 11]);
      x.requiresGrad = true;
      const [v, g] = tidy(() => {
        const l = fused
          ? crossEntropy(x, target, { reduction })
          : nll(x.logSoftmax(-1), target, { reduction });
        const w = tensor(randomData(l.size, 32), l.shape);
        l.mul(w).sum().backward();
        return [l, x.grad!];
      });
      const [lv, gv] = await readMany([v, g]);
      v.dispose();
      x.grad!.dispose();
      x.dispose();
      // nll gives -0 for an ignored row (the negated pick of 0), crossEntropy 0.
      return { l: Array.from(lv, (v) => v === 0 ? 0 : v), g: Array.from(gv) };
    };
    const a = await run(true), b = await run(false);
    if (exact) {
      assert.deepEqual(a.l, b.l, `${reduction} values`);
      assert.deepEqual(a.g, b.g, `${reduction} gradients`);
    } else {
      assertClose(a.l, b.l, 1e-5, 1e-5, `${reduction} values`);
      assertClose(a.g, b.g, 1e-5, 1e-5, `${reduction} gradients`);
    }
  }
  target.dispose();
});
