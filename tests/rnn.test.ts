/**
 * LSTM and Luong attention: forward passes against plain-TypeScript references on tiny sizes,
 * gradients against central differences (parameters as inputs), masking of padded positions,
 * and the dispatch count per LSTM time step.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { Generator } from "../gpu/random.ts";
import * as ops from "../tensor/ops.ts";
import { tensor } from "../tensor/functional.ts";
import { noGrad, readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import {
  LSTM,
  lstm,
  LSTM_DISPATCHES_PER_STEP,
  LSTMCell,
  lstmCell,
  type LSTMWeights,
  setLstmScan,
} from "../nn/rnn.ts";
import { LuongAttention, luongAttention } from "../nn/attention.ts";
import { assertClose, gradCheck, type GradInput, randomData, setup } from "./helpers.ts";

await setup();

// ------------------------------------------------------------------ plain TypeScript references

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** One PyTorch LSTM step for one batch row: weight [4H, F+H] row-major, gates i, f, g, o. */
function refStep(
  x: ArrayLike<number>,
  h: number[],
  c: number[],
  weight: Float32Array,
  bias: Float32Array,
): { h: number[]; c: number[] } {
  const H = h.length;
  const F = x.length;
  const xh = [...Array.from(x), ...h];
  const gate = (k: number, j: number) => {
    let s = bias[k * H + j];
    for (let q = 0; q < F + H; q++) s += weight[(k * H + j) * (F + H) + q] * xh[q];
    return s;
  };
  const hn: number[] = [];
  const cn: number[] = [];
  for (let j = 0; j < H; j++) {
    const i = sigmoid(gate(0, j));
    const f = sigmoid(gate(1, j));
    const g = Math.tanh(gate(2, j));
    const o = sigmoid(gate(3, j));
    cn.push(f * c[j] + i * g);
    hn.push(o * Math.tanh(cn[j]));
  }
  return { h: hn, c: cn };
}

interface HostWeights {
  weight: Float32Array;
  bias: Float32Array;
}

/**
 * Reference multi-layer LSTM, each batch row run on its own valid prefix (length `lengths[b]`),
 * zeros at padded outputs. x is [B, T, F] flat; states [L*D, B, H] flat.
 */
function refLstm(
  x: Float32Array,
  [B, T, F]: number[],
  weights: HostWeights[],
  H: number,
  dirs: number,
  opts: { lengths?: number[]; h0?: Float32Array; c0?: Float32Array; residual?: boolean } = {},
): { output: Float32Array; h: Float32Array; c: Float32Array } {
  const L = weights.length / dirs;
  const hOut = new Float32Array(L * dirs * B * H);
  const cOut = new Float32Array(L * dirs * B * H);
  let input = Array.from(
    { length: B },
    (_, b) =>
      Array.from(
        { length: T },
        (_, t) => Array.from(x.subarray((b * T + t) * F, (b * T + t + 1) * F)),
      ),
  );
  for (let l = 0; l < L; l++) {
    const next = Array.from({ length: B }, () => Array.from({ length: T }, () => [] as number[]));
    for (let d = 0; d < dirs; d++) {
      const k = l * dirs + d;
      for (let b = 0; b < B; b++) {
        const len = opts.lengths?.[b] ?? T;
        const at = (k * B + b) * H;
        let h = opts.h0 ? Array.from(opts.h0.subarray(at, at + H)) : new Array(H).fill(0);
        let c = opts.c0 ? Array.from(opts.c0.subarray(at, at + H)) : new Array(H).fill(0);
        const outs: number[][] = Array.from({ length: T }, () => new Array(H).fill(0));
        for (let s = 0; s < len; s++) {
          const t = d === 0 ? s : len - 1 - s;
          ({ h, c } = refStep(input[b][t], h, c, weights[k].weight, weights[k].bias));
          outs[t] = h;
        }
        for (let t = 0; t < T; t++) next[b][t].push(...outs[t]);
        hOut.set(h, at);
        cOut.set(c, at);
      }
    }
    if (opts.residual && l > 0) {
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) next[b][t] = next[b][t].map((v, j) => v + input[b][t][j]);
      }
    }
    input = next;
  }
  return { output: Float32Array.from(input.flat(2)), h: hOut, c: cOut };
}

async function hostWeights(cells: readonly LSTMWeights[]): Promise<HostWeights[]> {
  const flat = await readMany(cells.flatMap((w) => [w.weight, w.bias]));
  return cells.map((_, k) => ({
    weight: flat[2 * k] as Float32Array,
    bias: flat[2 * k + 1] as Float32Array,
  }));
}

// ------------------------------------------------------------------ LSTM forward

Deno.test("lstm: a cell step matches the reference, with and without a state", async () => {
  const cell = new LSTMCell(3, 4, { gen: new Generator(1) });
  assert.deepEqual(cell.namedParameters().map(([n, t]) => [n, t.shape]), [
    ["weight", [16, 7]],
    ["bias", [16]],
  ]);
  const [w] = await hostWeights([cell]);
  const xData = randomData(6, 2);
  const hData = randomData(8, 3);
  const cData = randomData(8, 4);
  const { s0, s1 } = tidy(() => {
    const x = tensor(xData, [2, 3]);
    const s0 = cell.forward(x);
    const s1 = cell.forward(x, { h: tensor(hData, [2, 4]), c: tensor(cData, [2, 4]) });
    return { s0, s1 };
  });
  const [h0, c0, h1, c1] = await readMany([s0.h, s0.c, s1.h, s1.c]);
  for (let b = 0; b < 2; b++) {
    const x = xData.subarray(3 * b, 3 * b + 3);
    const r0 = refStep(x, [0, 0, 0, 0], [0, 0, 0, 0], w.weight, w.bias);
    const r1 = refStep(
      x,
      Array.from(hData.subarray(4 * b, 4 * b + 4)),
      Array.from(cData.subarray(4 * b, 4 * b + 4)),
      w.weight,
      w.bias,
    );
    assertClose(h0.subarray(4 * b, 4 * b + 4), r0.h, 1e-5, 1e-4, "h (zero state)");
    assertClose(c0.subarray(4 * b, 4 * b + 4), r0.c, 1e-5, 1e-4, "c (zero state)");
    assertClose(h1.subarray(4 * b, 4 * b + 4), r1.h, 1e-5, 1e-4, "h");
    assertClose(c1.subarray(4 * b, 4 * b + 4), r1.c, 1e-5, 1e-4, "c");
  }
  for (const t of [s0.h, s0.c, s1.h, s1.c]) t.dispose();
  cell.dispose();
});

Deno.test("lstm: 2-layer bidirectional stack matches the reference (B=2, T=3, F=3, H=4)", async () => {
  const net = new LSTM(3, 4, { numLayers: 2, bidirectional: true, gen: new Generator(7) });
  assert.deepEqual(net.namedParameters().map(([n, t]) => `${n}[${t.shape}]`), [
    "l0.weight[16,7]",
    "l0.bias[16]",
    "l0_reverse.weight[16,7]",
    "l0_reverse.bias[16]",
    "l1.weight[16,12]",
    "l1.bias[16]",
    "l1_reverse.weight[16,12]",
    "l1_reverse.bias[16]",
  ]);
  const weights = await hostWeights(net.cells);
  const xData = randomData(2 * 3 * 3, 11);
  const h0 = randomData(4 * 2 * 4, 12);
  const c0 = randomData(4 * 2 * 4, 13);
  const cases = [
    { name: "zero state, full lengths", opts: {} },
    { name: "initial state and lengths [3, 2]", opts: { h0, c0, lengths: [3, 2] } },
    { name: "lengths [1, 3]", opts: { lengths: [1, 3] } },
  ];
  for (const { name, opts } of cases) {
    const ref = refLstm(xData, [2, 3, 3], weights, 4, 2, opts);
    const out = noGrad(() => {
      const state = opts.h0
        ? { h: tensor(opts.h0, [4, 2, 4]), c: tensor(opts.c0, [4, 2, 4]) }
        : undefined;
      const x = tensor(xData, [2, 3, 3]);
      const result = net.forward(x, { state, lengths: opts.lengths });
      x.dispose();
      state?.h.dispose();
      state?.c.dispose();
      return result;
    });
    assert.deepEqual(out.output.shape, [2, 3, 8]);
    assert.deepEqual(out.h.shape, [4, 2, 4]);
    const [output, h, c] = await readMany([out.output, out.h, out.c]);
    assertClose(output, ref.output, 1e-5, 1e-4, `${name}: output`);
    assertClose(h, ref.h, 1e-5, 1e-4, `${name}: h`);
    assertClose(c, ref.c, 1e-5, 1e-4, `${name}: c`);
    for (const t of [out.output, out.h, out.c]) t.dispose();
  }
  net.dispose();
});

Deno.test("lstm: residual stack matches the reference; dropout only in training mode", async () => {
  const net = new LSTM(2, 2, { numLayers: 3, residual: true, dropout: 0.5, gen: new Generator(3) });
  const weights = await hostWeights(net.cells);
  const xData = randomData(2 * 4 * 2, 21);
  const ref = refLstm(xData, [2, 4, 2], weights, 2, 1, { residual: true });
  const run = (gen?: Generator) =>
    noGrad(() => {
      const x = tensor(xData, [2, 4, 2]);
      const { output, h, c } = net.forward(x, { gen });
      x.dispose();
      h.dispose();
      c.dispose();
      return output;
    });
  net.eval();
  const evalOut = run();
  assertClose(await evalOut.data(), ref.output, 1e-5, 1e-4, "eval output");
  net.train();
  const [a, b, c] = [run(new Generator(5)), run(new Generator(5)), run(new Generator(6))];
  const [da, db, dc] = await readMany([a, b, c]);
  assert.deepEqual(da, db, "dropout is reproducible from the generator");
  assert.notDeepEqual(da, dc);
  assert.notDeepEqual(da, ref.output);
  for (const t of [evalOut, a, b, c]) t.dispose();
  net.dispose();
});

Deno.test("lstm: bad shapes and lengths are rejected with clear errors", () => {
  const net = new LSTM(3, 4);
  noGrad(() => {
    const x = tensor(randomData(6, 1), [2, 3]);
    assert.throws(() => net.forward(x), /batch-first \[B, T, F\]/);
    const x3 = tensor(randomData(12, 1), [2, 2, 3]);
    assert.throws(() => net.forward(x3, { lengths: [2, 0] }), /lengths must be integers in 1\.\.2/);
    assert.throws(() => net.forward(x3, { lengths: [2] }), /1 lengths for a batch of 2/);
    const bad = tensor(randomData(16, 1), [2, 2, 4]);
    assert.throws(
      () => net.forward(x3, { state: { h: bad, c: bad } }),
      /initial state must be \[1, 2, 4\]/,
    );
    for (const t of [x, x3, bad]) t.dispose();
  });
  net.dispose();
});

Deno.test("lstm: forget bias shifts only the f block of the bias", async () => {
  const a = new LSTMCell(2, 3, { gen: new Generator(9) });
  const b = new LSTMCell(2, 3, { gen: new Generator(9), forgetBias: 1 });
  const [ba, bb] = await readMany([a.bias, b.bias]);
  const diff = Array.from(bb, (v, i) => Math.round((v - ba[i]) * 1e4) / 1e4);
  assert.deepEqual(diff, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
  a.dispose();
  b.dispose();
});

Deno.test(`lstm: forward dispatches per time step = ${LSTM_DISPATCHES_PER_STEP}`, () => {
  const net = new LSTM(3, 4);
  const be = backend();
  const count = (steps: number, lengths?: number[]) =>
    noGrad(() => {
      const x = tensor(randomData(2 * steps * 3, 1), [2, steps, 3]);
      const state = {
        h: tensor(new Float32Array(8), [1, 2, 4]),
        c: tensor(new Float32Array(8), [1, 2, 4]),
      };
      const before = be.stats.dispatches;
      const out = net.forward(x, { state, lengths });
      for (const t of [out.output, out.h, out.c]) t.realize();
      const n = be.stats.dispatches - before;
      for (const t of [x, state.h, state.c, out.output, out.h, out.c]) t.dispose();
      return n;
    });
  assert.equal(count(5) - count(4), LSTM_DISPATCHES_PER_STEP);
  // The scan masks padded steps inside its step kernel.
  assert.equal(count(5, [5, 1]) - count(4, [4, 1]), LSTM_DISPATCHES_PER_STEP);
  // The composition it replaces: 7 per step; a padded step adds the two state `where`s and the
  // output mask: 2 more (5 before the recompute and fusion rules of tensor/lazy.ts).
  const was = setLstmScan(false);
  try {
    assert.equal(count(5) - count(4), 7);
    assert.equal(count(5, [5, 1]) - count(4, [4, 1]), 9);
  } finally {
    setLstmScan(was);
  }
  net.dispose();
});

Deno.test("lstm: the fused scan equals the per-step composition, forward and backward", async () => {
  // B=3, T=5, F=4, H=6, 2 layers, bidirectional, initial state, padding: outputs, final states and
  // every gradient (inputs, weights, initial state) of a loss that reads all of them.
  const B = 3, T = 5, F = 4, H = 6;
  const net = new LSTM(F, H, { numLayers: 2, bidirectional: true });
  const x = tensor(randomData(B * T * F, 11), [B, T, F]);
  const h0 = tensor(randomData(4 * B * H, 12), [4, B, H]);
  const c0 = tensor(randomData(4 * B * H, 13), [4, B, H]);
  const w = tensor(randomData(B * T * 2 * H, 14), [B, T, 2 * H]);
  for (const t of [x, h0, c0]) t.requiresGrad = true;
  const run = async (lengths?: number[]) => {
    const leaves = [x, h0, c0, ...net.parameters()];
    const values = tidy(() => {
      const out = net.forward(x, { state: { h: h0, c: c0 }, lengths });
      const loss = out.output.mul(w).sum().add(out.h.mul(out.h).sum()).add(out.c.sum());
      for (const l of leaves) l.grad = null;
      loss.backward();
      return [out.output, out.h, out.c, ...leaves.map((l) => l.grad!)];
    });
    const host = await readMany(values);
    for (const v of values) v.dispose();
    return host;
  };
  for (const lengths of [undefined, [5, 2, 4]]) {
    const fused = await run(lengths);
    const was = setLstmScan(false);
    let composed: ArrayLike<number>[];
    try {
      composed = await run(lengths);
    } finally {
      setLstmScan(was);
    }
    fused.forEach((v, k) =>
      assertClose(v, composed[k], 1e-5, 1e-4, `value ${k}, lengths ${lengths}`)
    );
  }
  for (const t of [x, h0, c0, w]) t.dispose();
  net.dispose();
});

// ------------------------------------------------------------------ LSTM gradients

const inp = (shape: number[], seed: number, scale = 1): GradInput => ({
  data: randomData(shape.reduce((a, b) => a * b, 1), seed, -scale, scale),
  shape,
});

/** Everything an LSTM returns, flattened into one tensor so the check covers h and c too. */
const flatAll = (o: { output: Tensor; h: Tensor; c: Tensor }) =>
  ops.concat([o.output.reshape([-1]), o.h.reshape([-1]), o.c.reshape([-1])], 0);

Deno.test("grad: bidirectional LSTM with initial state and padding (B=2, T=3, F=2, H=2)", async () => {
  await gradCheck(
    "lstm bidirectional",
    (x, w0, b0, w1, b1, h0, c0) =>
      flatAll(lstm(x, [{ weight: w0, bias: b0 }, { weight: w1, bias: b1 }], {
        bidirectional: true,
        state: { h: h0, c: c0 },
        lengths: [3, 2],
      })),
    [
      inp([2, 3, 2], 31),
      inp([8, 4], 32),
      inp([8], 33),
      inp([8, 4], 34),
      inp([8], 35),
      inp([2, 2, 2], 36),
      inp([2, 2, 2], 37),
    ],
  );
});

Deno.test("grad: 2-layer residual LSTM and a single cell step", async () => {
  await gradCheck(
    "lstm 2 layers residual",
    (x, w0, b0, w1, b1) =>
      flatAll(lstm(x, [{ weight: w0, bias: b0 }, { weight: w1, bias: b1 }], { residual: true })),
    [inp([2, 3, 2], 41), inp([8, 4], 42), inp([8], 43), inp([8, 4], 44), inp([8], 45)],
  );
  await gradCheck(
    "lstm cell",
    (x, w, b, h, c) => {
      const s = lstmCell(x, { h, c }, { weight: w, bias: b });
      return ops.concat([s.h, s.c], 1);
    },
    [inp([2, 3], 46), inp([8, 5], 47), inp([8], 48), inp([2, 2], 49), inp([2, 2], 50)],
  );
});

// ------------------------------------------------------------------ attention

/** Reference Luong general attention for one batch row. */
function refAttention(
  q: number[][],
  mem: number[][],
  W: number[][],
  len: number,
): { weights: number[][]; context: number[][] } {
  const weights = q.map((qt) => {
    const scores = mem.map((ms, s) => {
      if (s >= len) return -Infinity;
      let v = 0;
      for (let i = 0; i < qt.length; i++) {
        for (let j = 0; j < ms.length; j++) v += qt[i] * W[i][j] * ms[j];
      }
      return v;
    });
    const m = Math.max(...scores);
    const e = scores.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / z);
  });
  const context = weights.map((a) =>
    mem[0].map((_, j) => a.reduce((acc, w, s) => acc + w * mem[s][j], 0))
  );
  return { weights, context };
}

const rows = (data: Float32Array, shape: number[]) => {
  const [n, m] = shape;
  return Array.from({ length: n }, (_, i) => Array.from(data.subarray(i * m, (i + 1) * m)));
};

Deno.test("attention: matches the reference; padded source positions get zero weight", async () => {
  const att = new LuongAttention(3, 4, { outputSize: 2, gen: new Generator(4) });
  assert.deepEqual(att.namedParameters().map(([n, t]) => `${n}[${t.shape}]`), [
    "weight[3,4]",
    "combine[2,7]",
  ]);
  const [B, Tq, Ts, Hq, Hs] = [2, 2, 3, 3, 4];
  const qData = randomData(B * Tq * Hq, 51);
  const mData = randomData(B * Ts * Hs, 52);
  const lengths = [3, 2];
  const q3 = tensor(qData, [B, Tq, Hq]);
  const mem3 = tensor(mData, [B, Ts, Hs]);
  const out = noGrad(() => att.forward(q3, mem3, { lengths }));
  assert.deepEqual(out.context.shape, [B, Tq, Hs]);
  assert.deepEqual(out.weights.shape, [B, Tq, Ts]);
  assert.deepEqual(out.output!.shape, [B, Tq, 2]);
  const [context, weights, output, W, Wc] = await readMany([
    out.context,
    out.weights,
    out.output!,
    att.weight,
    att.combine!,
  ]);
  const Wr = rows(W as Float32Array, [Hq, Hs]);
  const Wcr = rows(Wc as Float32Array, [2, Hs + Hq]);
  for (let b = 0; b < B; b++) {
    const q = rows(qData.subarray(b * Tq * Hq, (b + 1) * Tq * Hq), [Tq, Hq]);
    const mem = rows(mData.subarray(b * Ts * Hs, (b + 1) * Ts * Hs), [Ts, Hs]);
    const ref = refAttention(q, mem, Wr, lengths[b]);
    assertClose(
      weights.subarray(b * Tq * Ts, (b + 1) * Tq * Ts),
      ref.weights.flat(),
      1e-6,
      1e-4,
      "weights",
    );
    assertClose(
      context.subarray(b * Tq * Hs, (b + 1) * Tq * Hs),
      ref.context.flat(),
      1e-6,
      1e-4,
      "context",
    );
    const refOut = ref.context.map((ct, t) => {
      const both = [...ct, ...q[t]];
      return Wcr.map((row) => Math.tanh(row.reduce((acc, w, j) => acc + w * both[j], 0)));
    });
    assertClose(output.subarray(b * Tq * 2, (b + 1) * Tq * 2), refOut.flat(), 1e-6, 1e-4, "output");
  }
  // Row 1 has length 2: its third source position gets exactly zero weight.
  assert.equal(weights[(1 * Tq + 0) * Ts + 2], 0);
  assert.equal(weights[(1 * Tq + 1) * Ts + 2], 0);
  // A 2-D query is one decoder step: the same as row t = 0 of the 3-D query.
  const q2 = tensor(
    Float32Array.from({ length: B * Hq }, (_, k) => qData[Math.floor(k / Hq) * Tq * Hq + (k % Hq)]),
    [B, Hq],
  );
  const step = noGrad(() => luongAttention(q2, mem3, att.weight, { lengths }));
  assert.deepEqual(step.context.shape, [B, Hs]);
  assert.deepEqual(step.weights.shape, [B, Ts]);
  const stepContext = await step.context.data();
  for (let b = 0; b < B; b++) {
    const row = context.subarray(b * Tq * Hs, b * Tq * Hs + Hs);
    assertClose(stepContext.subarray(b * Hs, (b + 1) * Hs), row, 1e-6, 1e-5, "one-step context");
  }
  assert.throws(
    () => noGrad(() => att.forward(q3, mem3, { lengths: [3, 4] })),
    /source lengths must be integers in 1\.\.3/,
  );
  for (
    const t of [out.context, out.weights, out.output!, step.context, step.weights, q2, q3, mem3]
  ) {
    t.dispose();
  }
  att.dispose();
});

Deno.test("grad: Luong attention with masking and the combine layer", async () => {
  await gradCheck(
    "attention",
    (q, m, w, wc) => {
      const o = luongAttention(q, m, w, { lengths: [3, 2], combine: wc });
      return ops.concat(
        [o.context.reshape([-1]), o.weights.reshape([-1]), o.output!.reshape([-1])],
        0,
      );
    },
    [inp([2, 2, 2], 61), inp([2, 3, 3], 62), inp([2, 3], 63), inp([2, 5], 64)],
  );
  await gradCheck(
    "attention one step",
    (q, m, w) => luongAttention(q, m, w).context,
    [inp([2, 2], 65), inp([2, 3, 3], 66), inp([2, 3], 67)],
  );
});
