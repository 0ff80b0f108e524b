/**
 * Layers against plain-TypeScript references on tiny sizes, gradients by central differences,
 * and train/eval behaviour of dropout and batch norm.
 */

import assert from "node:assert/strict";
import { Generator } from "../gpu/random.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import {
  batchNorm,
  BatchNorm1d,
  BatchNorm2d,
  Dropout,
  dropout,
  Embedding,
  embedding,
  LayerNorm,
  layerNorm,
  LeakyReLU,
  Linear,
  linear,
  ReLU,
  Sequential,
  Sigmoid,
  Tanh,
} from "../nn/layers.ts";
import { assertClose, gradCheck, type GradInput, randomData, setup } from "./helpers.ts";

await setup();

const inp = (shape: number[], seed: number, lo = -1, hi = 1): GradInput => ({
  data: randomData(shape.reduce((a, b) => a * b, 1), seed, lo, hi),
  shape,
});

/** Host reference of x [rows, in] @ w^T [in, out] + b. */
function linearRef(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: ArrayLike<number> | null,
  inF: number,
  outF: number,
) {
  const rows = x.length / inF;
  const y = new Float64Array(rows * outF);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) s += x[r * inF + i] * w[o * inF + i];
      y[r * outF + o] = s;
    }
  }
  return y;
}

Deno.test("Linear: forward matches the reference for 1-D, 2-D and 3-D inputs", async () => {
  const layer = new Linear(4, 5, { gen: new Generator(1) });
  for (const shape of [[4], [3, 4], [2, 3, 4]]) {
    const xData = randomData(shape.reduce((a, b) => a * b, 1), 2);
    const [y, w, b] = await readMany(
      tidy(() => [layer.forward(tensor(xData, shape)), layer.weight, layer.bias!]),
    );
    assertClose(y, linearRef(xData, w, b, 4, 5), 1e-5, 1e-5, `shape [${shape}]`);
  }
  layer.dispose();
});

Deno.test("Linear: PyTorch (kaiming) and glorot initialization, optional bias", async () => {
  const k = new Linear(16, 8, { gen: new Generator(3) });
  const g = new Linear(16, 8, { init: "glorot", gen: new Generator(3) });
  const nb = new Linear(16, 8, { bias: false });
  assert.deepEqual(k.namedParameters().map(([n, t]) => [n, t.shape]), [["weight", [8, 16]], [
    "bias",
    [8],
  ]]);
  assert.deepEqual(nb.namedParameters().map(([n]) => n), ["weight"]);
  const [kw, kb, gw, gb] = await readMany([k.weight, k.bias!, g.weight, g.bias!]);
  const bound = 1 / Math.sqrt(16);
  assert.ok([...kw, ...kb].every((v) => Math.abs(v) <= bound), "kaiming bound");
  assert.ok(Math.max(...kw.map(Math.abs)) > bound * 0.8, "kaiming fills its range");
  const gBound = Math.sqrt(6 / 24);
  assert.ok(gw.every((v) => Math.abs(v) <= gBound) && Math.max(...gw.map(Math.abs)) > bound);
  assert.deepEqual(Array.from(gb), new Array(8).fill(0));
  for (const m of [k, g, nb]) m.dispose();
});

Deno.test("grad: linear (x, weight, bias)", async () => {
  await gradCheck("linear", (x, w, b) => linear(x, w, b), [
    inp([3, 4], 10),
    inp([5, 4], 11),
    inp([5], 12),
  ]);
});

Deno.test("Sequential and activations: forward matches the reference; names are 0.weight, ...", async () => {
  const net = new Sequential(
    new Linear(3, 4, { gen: new Generator(5) }),
    new ReLU(),
    new Linear(4, 4, { gen: new Generator(6) }),
    new LeakyReLU(0.2),
    new Linear(4, 2, { gen: new Generator(7) }),
    new Tanh(),
    new Sigmoid(),
  );
  assert.deepEqual(net.namedParameters().map(([n]) => n), [
    "0.weight",
    "0.bias",
    "2.weight",
    "2.bias",
    "4.weight",
    "4.bias",
  ]);
  const xData = randomData(6, 8, -2, 2);
  const [y, ...ps] = await readMany(
    tidy(() => [net.forward(tensor(xData, [2, 3])), ...net.parameters()]),
  );
  let h: ArrayLike<number> = xData;
  h = linearRef(h, ps[0], ps[1], 3, 4).map((v) => Math.max(v, 0));
  h = linearRef(h, ps[2], ps[3], 4, 4).map((v) => (v < 0 ? 0.2 * v : v));
  h = linearRef(h, ps[4], ps[5], 4, 2).map((v) => 1 / (1 + Math.exp(-Math.tanh(v))));
  assertClose(y, h, 1e-5, 1e-5, "sequential");
  net.dispose();
});

Deno.test("Dropout: train zeroes ~p and scales the rest by 1/(1-p); eval is the identity", async () => {
  const p = 0.3;
  const n = 2000;
  const xData = randomData(n, 9, 0.5, 1.5);
  const x = tensor(xData);
  const layer = new Dropout(p, new Generator(11));
  const [train] = await readMany(tidy(() => [layer.forward(x)]));
  let zeros = 0;
  train.forEach((v, i) => {
    if (v === 0) zeros++;
    else assertClose([v], [xData[i] / (1 - p)], 1e-6, 1e-6, `kept ${i}`);
  });
  assert.ok(Math.abs(zeros / n - p) < 0.04, `dropped fraction ${zeros / n}`);
  layer.eval();
  assert.equal(layer.forward(x), x, "eval returns the input");
  layer.train();
  const [again] = await readMany(tidy(() => [layer.forward(x)]));
  assert.notDeepEqual(Array.from(again), Array.from(train), "a new mask each call");
  x.dispose();
  assert.throws(() => new Dropout(1.5), /p must be in \[0, 1\]/);
});

Deno.test("grad: dropout (fixed mask from a seeded generator)", async () => {
  await gradCheck("dropout", (x) => dropout(x, 0.4, true, new Generator(13)), [inp([4, 5], 14)]);
});

/** Host reference of (x - mean) / sqrt(var + eps) over groups of `inner` consecutive elements. */
function normalizeRows(x: ArrayLike<number>, inner: number, eps: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < x.length / inner; r++) {
    const row = Array.from({ length: inner }, (_, i) => x[r * inner + i]);
    const m = row.reduce((a, b) => a + b, 0) / inner;
    const v = row.reduce((a, b) => a + (b - m) ** 2, 0) / inner;
    out.push(...row.map((e) => (e - m) / Math.sqrt(v + eps)));
  }
  return out;
}

Deno.test("LayerNorm: forward matches the reference (affine and not)", async () => {
  const xData = randomData(2 * 3 * 4, 15, -2, 2);
  const ln = new LayerNorm([3, 4]);
  const plain = new LayerNorm(4, 1e-3, false);
  assert.equal(plain.parameters().length, 0);
  const [y1, y2] = await readMany(tidy(() => {
    const x = tensor(xData, [2, 3, 4]);
    return [ln.forward(x), plain.forward(x)];
  }));
  assertClose(y1, normalizeRows(xData, 12, 1e-5), 1e-5, 1e-4, "LayerNorm([3,4])");
  assertClose(y2, normalizeRows(xData, 4, 1e-3), 1e-5, 1e-4, "LayerNorm(4)");
  assert.throws(() => ln.forward(tensor([1, 2, 3])), /does not end with \[3,4\]/);
  ln.dispose();
});

Deno.test("grad: layerNorm with weight and bias", async () => {
  await gradCheck(
    "layerNorm",
    (x, w, b) => layerNorm(x, [5], w, b),
    [inp([3, 5], 16, -2, 2), inp([5], 17), inp([5], 18)],
    { eps: 1e-2, atol: 3e-2, rtol: 3e-2 },
  );
});

/** Host batch-norm reference over NC(L) data: per-channel stats over N and the rest. */
function batchStats(x: ArrayLike<number>, shape: number[]) {
  const [n, c] = shape;
  const inner = shape.slice(2).reduce((a, b) => a * b, 1);
  const mean = new Array(c).fill(0);
  const vr = new Array(c).fill(0);
  const count = n * inner;
  const at = (i: number, ch: number, j: number) => x[(i * c + ch) * inner + j];
  for (let ch = 0; ch < c; ch++) {
    for (let i = 0; i < n; i++) for (let j = 0; j < inner; j++) mean[ch] += at(i, ch, j) / count;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < inner; j++) vr[ch] += (at(i, ch, j) - mean[ch]) ** 2 / count;
    }
  }
  const apply = (m: number[], v: number[], eps: number) =>
    Array.from(x, (e, k) => {
      const ch = Math.floor(k / inner) % c;
      return (e - m[ch]) / Math.sqrt(v[ch] + eps);
    });
  return { mean, var: vr, count, apply };
}

Deno.test("BatchNorm1d: batch statistics in training, running statistics (unbiased var) in eval", async () => {
  for (const shape of [[4, 3], [3, 3, 2]]) {
    const bn = new BatchNorm1d(3);
    assert.deepEqual(bn.parameters().map((t) => t.name), ["weight", "bias"]);
    assert.deepEqual(bn.namedBuffers().map(([n]) => n), ["runningMean", "runningVar"]);
    const xData = randomData(shape.reduce((a, b) => a * b, 1), 19, -2, 3);
    const s = batchStats(xData, shape);
    const x = tensor(xData, shape);
    const [train, rm1, rv1] = await readMany(
      tidy(() => [bn.forward(x), bn.runningMean!, bn.runningVar!]),
    );
    assertClose(train, s.apply(s.mean, s.var, 1e-5), 1e-5, 1e-4, `train [${shape}]`);
    const unbiased = s.var.map((v) => (v * s.count) / (s.count - 1));
    assertClose(rm1, s.mean.map((m) => 0.1 * m), 1e-6, 1e-5, "running mean after 1 step");
    assertClose(rv1, unbiased.map((v) => 0.9 + 0.1 * v), 1e-6, 1e-5, "running var after 1 step");
    tidy(() => {
      bn.forward(x);
    });
    const rm2 = s.mean.map((m) => 0.9 * 0.1 * m + 0.1 * m);
    const rv2 = unbiased.map((v) => 0.9 * (0.9 + 0.1 * v) + 0.1 * v);
    bn.eval();
    const [evalOut, rm, rv] = await readMany(
      tidy(() => [bn.forward(x), bn.runningMean!, bn.runningVar!]),
    );
    assertClose(rm, rm2, 1e-6, 1e-5, "running mean after 2 steps");
    assertClose(rv, rv2, 1e-6, 1e-5, "running var after 2 steps");
    assertClose(evalOut, s.apply(rm2, rv2, 1e-5), 1e-5, 1e-4, `eval [${shape}]`);
    x.dispose();
    bn.dispose();
  }
});

Deno.test("BatchNorm2d: NCHW forward in train and eval mode; errors", async () => {
  const shape = [2, 3, 2, 2];
  const bn = new BatchNorm2d(3, { momentum: 0.5 });
  const xData = randomData(24, 20, -1, 2);
  const s = batchStats(xData, shape);
  const x = tensor(xData, shape);
  const [train] = await readMany(tidy(() => [bn.forward(x)]));
  assertClose(train, s.apply(s.mean, s.var, 1e-5), 1e-5, 1e-4, "train");
  bn.eval();
  const [evalOut] = await readMany(tidy(() => [bn.forward(x)]));
  const rm = s.mean.map((m) => 0.5 * m);
  const rv = s.var.map((v) => 0.5 + (0.5 * v * s.count) / (s.count - 1));
  assertClose(evalOut, s.apply(rm, rv, 1e-5), 1e-5, 1e-4, "eval");
  assert.throws(() => bn.forward(tensor([1, 2, 3], [1, 3])), /BatchNorm2d\(3\): expects 4-D input/);
  bn.train();
  assert.throws(
    () => new BatchNorm1d(3).forward(tensor([1, 2, 3], [1, 3])),
    /more than 1 value per channel/,
  );
  x.dispose();
  bn.dispose();
});

Deno.test("grad: batchNorm (training statistics) with weight and bias, 3-D and 4-D", async () => {
  const opts = { eps: 1e-2, atol: 3e-2, rtol: 3e-2 };
  await gradCheck(
    "batchNorm [N,C,L]",
    (x, w, b) => batchNorm(x, { training: true, weight: w, bias: b }),
    [inp([3, 2, 2], 21, -2, 2), inp([2], 22), inp([2], 23)],
    opts,
  );
  await gradCheck(
    "batchNorm [N,C,H,W]",
    (x) => batchNorm(x, { training: true }),
    [inp([2, 2, 2, 2], 24, -2, 2)],
    opts,
  );
});

Deno.test("Embedding: rows by index; the padding row reads zeros and gets no gradient", async () => {
  const emb = new Embedding(5, 3, { paddingIdx: -1, gen: new Generator(25) });
  assert.equal(emb.paddingIdx, 4);
  const idx = tensor(new Int32Array([2, 4, 0, 2]), [2, 2]);
  const out = emb.forward(idx);
  assert.deepEqual(out.shape, [2, 2, 3]);
  out.mul(tensor(randomData(12, 26), [2, 2, 3])).sum().backward();
  const [y, w, g] = await readMany([out, emb.weight, emb.weight.grad!]);
  const row = (t: ArrayLike<number>, r: number) =>
    Array.from({ length: 3 }, (_, j) => t[r * 3 + j]);
  assertClose(y, [...row(w, 2), 0, 0, 0, ...row(w, 0), ...row(w, 2)], 0, 0, "lookup");
  assert.deepEqual(row(w, 4), [0, 0, 0], "padding row initialized to zero");
  assert.deepEqual(row(g, 4), [0, 0, 0], "no gradient into the padding row");
  assert.ok(row(g, 2).every((v) => v !== 0), "gradient into used rows");
  emb.dispose();
});

Deno.test("grad: embedding with padding index", async () => {
  await gradCheck("embedding", (w, i) => embedding(i, w, 1), [
    inp([4, 3], 27),
    { data: Int32Array.from([1, 3, 0, 3, 1]), shape: [5], dtype: "i32" },
  ]);
});

Deno.test("Module buffers: not parameters, disposed with the module, names checked", () => {
  const net = new Sequential(new Linear(2, 3), new BatchNorm1d(3));
  assert.deepEqual(net.namedBuffers().map(([n]) => n), ["1.runningMean", "1.runningVar"]);
  assert.equal(net.parameters().length, 4);
  const buffers: Tensor[] = net.namedBuffers().map(([, t]) => t);
  net.dispose();
  assert.ok(buffers.every((t) => t.isDisposed));
});

Deno.test("tidy: a parameter returned through an identity layer survives nested scopes", () => {
  const lin = new Linear(2, 2);
  const drop = new Dropout(0.5).eval();
  tidy(() => {
    tidy(() => drop.forward(lin.weight));
  });
  assert.equal(lin.weight.isDisposed, false);
  lin.dispose();
});
