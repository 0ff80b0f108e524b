/**
 * Optimizers against hand-computed steps: Adam (bias correction; L2 and decoupled weight decay;
 * shared vs per-group step counters), SGD (momentum, dampening, Nesterov, weight decay); GPU-side
 * gating with indirect dispatch; gradient norms and clipping; state round trips; schedules.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { FlatParams } from "../nn/module.ts";
import {
  Adam,
  AdamW,
  clipGradNorm,
  constantLr,
  cosineLr,
  gradNorm,
  linearLr,
  SGD,
  stepLr,
} from "../nn/optim.ts";
import { assertClose, setup } from "./helpers.ts";

await setup();

const G0 = [0.5, -1.5, 2.0];
const D0 = [1.0, -0.25];

/** Two groups: G holds one 3-element parameter, D one 2-element parameter. */
function model(): FlatParams {
  return new FlatParams([["g.w", tensor(G0)], ["d.w", tensor(D0)]], { G: ["g."], D: ["d."] });
}

function setGrads(flat: FlatParams, g: number[], d: number[]): void {
  flat.zeroGrad();
  const be = backend();
  for (const [p, v] of [[flat.params[0], g], [flat.params[1], d]] as [Tensor, number[]][]) {
    be.write(p.grad!.storageFor("test"), new Float32Array(v), p.grad!.offset);
  }
}

async function values(flat: FlatParams): Promise<number[][]> {
  return (await readMany(flat.params)).map((a) => Array.from(a));
}

/** Reference Adam on one parameter vector (float64), PyTorch's formulas. */
function adamRef(
  p: number[],
  grads: number[][],
  steps: number[],
  o: { lr: number; b1: number; b2: number; eps: number; wd: number; decoupled: boolean },
): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const x = [...p];
  grads.forEach((g0, k) => {
    const t = steps[k];
    for (let i = 0; i < x.length; i++) {
      const g = g0[i] + (o.decoupled ? 0 : o.wd * x[i]);
      m[i] = o.b1 * m[i] + (1 - o.b1) * g;
      v[i] = o.b2 * v[i] + (1 - o.b2) * g * g;
      const mh = m[i] / (1 - o.b1 ** t);
      const vh = v[i] / (1 - o.b2 ** t);
      if (o.decoupled) x[i] -= o.lr * o.wd * x[i];
      x[i] -= o.lr * mh / (Math.sqrt(vh) + o.eps);
    }
  });
  return x;
}

const ADAM = { lr: 0.1, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0, decoupled: false };

Deno.test("adam: first step moves each weight by lr * sign(grad) (bias correction)", async () => {
  const flat = model();
  const opt = new Adam(flat, { lr: 0.1 });
  setGrads(flat, [0.3, -2, 1e-3], [5, -0.01]);
  opt.step();
  const [g, d] = await values(flat);
  // m̂ = g and v̂ = g² after one bias-corrected step, so the update is lr * g / |g|.
  assertClose(g, [0.4, -1.4, 1.9], 1e-6, 1e-5, "G");
  assertClose(d, [0.9, -0.15], 1e-6, 1e-5, "D");
  assert.deepEqual(Array.from(await opt.stepCounts().data()), [1]);
  opt.dispose();
  flat.dispose();
});

Deno.test("adam: two steps match the bias-corrected reference", async () => {
  const flat = model();
  const opt = new Adam(flat, { lr: 0.1 });
  const grads = [[[0.3, -2, 0.7], [5, -0.01]], [[-0.1, 1, 0.2], [1, 1]]];
  for (const [g, d] of grads) {
    setGrads(flat, g, d);
    opt.step();
  }
  const [g, d] = await values(flat);
  assertClose(g, adamRef(G0, grads.map((x) => x[0]), [1, 2], ADAM), 1e-6, 1e-5, "G");
  assertClose(d, adamRef(D0, grads.map((x) => x[1]), [1, 2], ADAM), 1e-6, 1e-5, "D");
  opt.dispose();
  flat.dispose();
});

Deno.test("adam: bias corrections are accurate at any step count (constant gradient)", async () => {
  // With a constant gradient g, m_t = g (1 - b1^t) and v_t = g^2 (1 - b2^t), so m̂ = g, v̂ = g^2
  // and every step moves by exactly lr. Start from the exact state at step t0 and take one step.
  const [b1, b2, lr, g] = [0.9, 0.999, 0.01, 0.75];
  for (const t0 of [0, 1, 4, 5, 6, 499, 500, 501, 5000, 100000]) {
    const flat = new FlatParams([["w", tensor([0])]]);
    const opt = new Adam(flat, { lr, betas: [b1, b2], eps: 0 });
    const n = flat.size;
    opt.loadState({
      tensors: {
        "optim.steps": new Float32Array([t0]),
        "optim.m": new Float32Array(n).fill(g * (1 - b1 ** t0)),
        "optim.v": new Float32Array(n).fill(g * g * (1 - b2 ** t0)),
      },
      metadata: opt.state().metadata,
    });
    backend().write(flat.grad.storageFor("test"), new Float32Array([g]));
    opt.step();
    assertClose(await flat.params[0].data(), [-lr], 0, 2e-6, `t = ${t0 + 1}`);
    opt.dispose();
    flat.dispose();
  }
});

Deno.test("adam: L2 and decoupled (AdamW) weight decay", async () => {
  for (const decoupled of [false, true]) {
    const flat = model();
    const opt = decoupled
      ? new AdamW(flat, { lr: 0.05, weightDecay: 0.1 })
      : new Adam(flat, { lr: 0.05, weightDecay: 0.1 });
    const grads = [[[0.3, -2, 0.7], [5, -0.01]], [[-0.1, 1, 0.2], [1, 1]]];
    for (const [g, d] of grads) {
      setGrads(flat, g, d);
      opt.step();
    }
    const o = { ...ADAM, lr: 0.05, wd: 0.1, decoupled };
    const [g, d] = await values(flat);
    assertClose(g, adamRef(G0, grads.map((x) => x[0]), [1, 2], o), 1e-6, 1e-5, `G ${decoupled}`);
    assertClose(d, adamRef(D0, grads.map((x) => x[1]), [1, 2], o), 1e-6, 1e-5, `D ${decoupled}`);
    opt.dispose();
    flat.dispose();
  }
});

Deno.test("adam: shared counter (authors' code) vs per-group counters", async () => {
  const gG = [0.3, -2, 0.7];
  const gD = [5, -0.01];
  for (const sharing of ["shared", "per-group"] as const) {
    const flat = model();
    const opt = new Adam(flat, { lr: 0.1, stateSharing: sharing });
    // Step G (with G's gradient), then D twice.
    setGrads(flat, gG, [0, 0]);
    opt.step("G");
    setGrads(flat, [0, 0, 0], gD);
    opt.step("D");
    opt.step("D");
    const [g, d] = await values(flat);
    // Shared: D's updates run at t = 2 and 3. Per-group: at t = 1 and 2.
    const tD = sharing === "shared" ? [2, 3] : [1, 2];
    assertClose(g, adamRef(G0, [gG], [1], ADAM), 1e-6, 1e-5, `G ${sharing}`);
    assertClose(d, adamRef(D0, [gD, gD], tD, ADAM), 1e-6, 1e-5, `D ${sharing}`);
    // The two modes must actually differ on D.
    const other = adamRef(D0, [gD, gD], sharing === "shared" ? [1, 2] : [2, 3], ADAM);
    assert.ok(Math.abs(d[0] - other[0]) > 1e-3, `D ${sharing} should differ from the other mode`);
    const counts = Array.from(await opt.stepCounts().data());
    assert.deepEqual(counts, sharing === "shared" ? [3] : [1, 2]);
    assert.deepEqual(opt.slots, sharing === "shared" ? ["shared"] : ["G", "D"]);
    opt.dispose();
    flat.dispose();
  }
});

Deno.test("adam: per-group step() on all advances every group's counter", async () => {
  const flat = model();
  const opt = new Adam(flat, { lr: 0.1, stateSharing: "per-group" });
  setGrads(flat, [1, 1, 1], [1, 1]);
  opt.step();
  opt.step("G");
  assert.deepEqual(Array.from(await opt.stepCounts().data()), [2, 1]);
  assert.throws(() => opt.step("E"), /unknown parameter group 'E'; groups: G, D, all/);
  opt.dispose();
  flat.dispose();
});

Deno.test("optim: changing lr recompiles nothing and does not force a submit", async () => {
  const flat = model();
  const opt = new Adam(flat, { lr: 0.1 });
  setGrads(flat, [1, 1, 1], [1, 1]);
  opt.step();
  const be = backend();
  be.flush();
  const { pipelines, submits } = be.stats;
  for (let k = 0; k < 5; k++) {
    opt.lr = 0.1 / (k + 2);
    opt.step();
  }
  assert.equal(be.stats.pipelines, pipelines);
  assert.equal(be.stats.submits, submits);
  // 1 + 5 steps with lr 0.1, 0.05, 0.0333, 0.025, 0.02, 0.0167 and a constant gradient of 1: each
  // Adam step is lr * 1 (m̂ = v̂ = 1), so the total move is the sum of the learning rates.
  const total = 0.1 + [2, 3, 4, 5, 6].reduce((a, k) => a + 0.1 / k, 0);
  const [g] = await values(flat);
  assertClose(g, G0.map((x) => x - total), 1e-5, 1e-5, "G");
  opt.dispose();
  flat.dispose();
});

/** Reference SGD (PyTorch). */
function sgdRef(
  p: number[],
  grads: number[][],
  o: { lr: number; momentum: number; dampening: number; nesterov: boolean; wd: number },
): number[] {
  const x = [...p];
  const buf = p.map(() => 0);
  grads.forEach((g0, k) => {
    for (let i = 0; i < x.length; i++) {
      const g = g0[i] + o.wd * x[i];
      let d = g;
      if (o.momentum > 0) {
        buf[i] = k === 0 ? g : o.momentum * buf[i] + (1 - o.dampening) * g;
        d = o.nesterov ? g + o.momentum * buf[i] : buf[i];
      }
      x[i] -= o.lr * d;
    }
  });
  return x;
}

Deno.test("sgd: plain, momentum, dampening, nesterov and weight decay match the reference", async () => {
  const cases = [
    { lr: 0.1, momentum: 0, dampening: 0, nesterov: false, wd: 0 },
    { lr: 0.1, momentum: 0.9, dampening: 0, nesterov: false, wd: 0 },
    { lr: 0.1, momentum: 0.9, dampening: 0.5, nesterov: false, wd: 0.01 },
    { lr: 0.05, momentum: 0.8, dampening: 0, nesterov: true, wd: 0.1 },
  ];
  const grads = [[[0.3, -2, 0.7], [5, -0.01]], [[-0.1, 1, 0.2], [1, 1]], [[1, 1, 1], [-1, 2]]];
  for (const c of cases) {
    const flat = model();
    const opt = new SGD(flat, { ...c, weightDecay: c.wd });
    for (const [g, d] of grads) {
      setGrads(flat, g, d);
      opt.step();
    }
    const [g, d] = await values(flat);
    assertClose(g, sgdRef(G0, grads.map((x) => x[0]), c), 1e-6, 1e-5, `G ${JSON.stringify(c)}`);
    assertClose(d, sgdRef(D0, grads.map((x) => x[1]), c), 1e-6, 1e-5, `D ${JSON.stringify(c)}`);
    opt.dispose();
    flat.dispose();
  }
  assert.throws(() => new SGD(model(), { lr: 0.1, nesterov: true }), /Nesterov momentum requires/);
});

Deno.test("gating: indirect args decide on the GPU which group steps", async () => {
  const flat = model();
  const opt = new Adam(flat, { lr: 0.1, stateSharing: "per-group" });
  setGrads(flat, [1, 1, 1], [1, 1]);
  // Branch taken: G (its dispatch size); branch not taken: D (zero workgroups).
  const args = tensor(new Uint32Array([...opt.dispatchSize("G"), 0, 0, 0]));
  opt.step("G", { indirect: { args, at: 0 } });
  opt.step("D", { indirect: { args, at: 3 } });
  // Any non-zero count is correct too (grid-stride kernels): 3 workgroups for G again.
  const three = tensor(new Uint32Array([3, 1, 1]));
  opt.step("G", { indirect: three });
  const [g, d] = await values(flat);
  assertClose(g, G0.map((x) => x - 0.2), 1e-6, 1e-5, "G moved twice");
  assert.deepEqual(d, D0, "D untouched");
  assert.deepEqual(Array.from(await opt.stepCounts().data()), [2, 0]);
  assert.throws(() => opt.step("G", { indirect: tensor([1, 1, 1]) }), /u32\/i32 workgroup counts/);
  args.dispose();
  three.dispose();
  opt.dispose();
  flat.dispose();
});

Deno.test("gradNorm: one kernel per range, on the GPU", async () => {
  const flat = model();
  setGrads(flat, [3, 0, 4], [1, -1]);
  const [all, g, d, w] = await readMany([
    gradNorm(flat),
    gradNorm(flat, "G"),
    gradNorm(flat, "D"),
    gradNorm(flat, flat.ranges.get("d.w")!),
  ]);
  assertClose(all, [Math.sqrt(27)], 1e-6, 1e-6, "all");
  assertClose(g, [5], 1e-6, 1e-6, "G");
  assertClose(d, [Math.SQRT2], 1e-6, 1e-6, "D");
  assertClose(w, [Math.SQRT2], 1e-6, 1e-6, "d.w");
  flat.dispose();
});

Deno.test("gradNorm: a large range (several passes per thread)", async () => {
  const n = 5000;
  const x = Float32Array.from({ length: n }, (_, i) => ((i % 7) - 3) / 10);
  const flat = new FlatParams([["w", tensor(x)]]);
  backend().write(flat.grad.storageFor("test"), x);
  const norm = Math.sqrt(x.reduce((a, v) => a + v * v, 0));
  assertClose(await gradNorm(flat).data(), [norm], 1e-5, 1e-5, "norm");
  flat.dispose();
});

Deno.test("clipGradNorm: scales to maxNorm on the GPU, leaves small gradients alone", async () => {
  const flat = model();
  setGrads(flat, [3, 0, 4], [1, -1]);
  const norms = tidy(() => [clipGradNorm(flat, 1, "G"), clipGradNorm(flat, 10, "D")]);
  const [nG, nD, g, d] = await readMany([...norms, ...flat.params.map((p) => p.grad!)]);
  assertClose(nG, [5], 1e-6, 1e-6, "norm G");
  assertClose(nD, [Math.SQRT2], 1e-6, 1e-6, "norm D");
  assertClose(g, [0.6, 0, 0.8], 1e-6, 1e-5, "G clipped");
  assertClose(d, [1, -1], 0, 0, "D unchanged");
  // Gated off: nothing happens.
  setGrads(flat, [3, 0, 4], [1, -1]);
  const zero = tensor(new Uint32Array([0, 0, 0]));
  clipGradNorm(flat, 1, "G", { indirect: zero });
  assertClose(await flat.params[0].grad!.data(), [3, 0, 4], 0, 0, "gated off");
  zero.dispose();
  for (const t of norms) t.dispose();
  flat.dispose();
});

Deno.test("clipGradNorm: a NaN or infinite gradient propagates NaN, as PyTorch", async () => {
  for (const bad of [NaN, Infinity]) {
    const flat = model();
    setGrads(flat, [3, bad, 4], [1, -1]);
    clipGradNorm(flat, 1);
    const [g, d] = await readMany(flat.params.map((p) => p.grad!));
    assert.ok([...g, ...d].every(Number.isNaN), `${bad}: ${g} ${d}`);
    flat.dispose();
  }
});

Deno.test("optim state: round trip through state()/loadState() continues identically", async () => {
  const grads = [[[0.3, -2, 0.7], [5, -0.01]], [[-0.1, 1, 0.2], [1, 1]]];
  const a = model();
  const optA = new Adam(a, { lr: 0.1, stateSharing: "per-group" });
  setGrads(a, grads[0][0], grads[0][1]);
  optA.step("G");
  optA.step("D");
  optA.step("G");
  const st = optA.state();
  assert.deepEqual(Object.keys(st.tensors).sort(), ["optim.m", "optim.steps", "optim.v"]);
  assert.equal(st.metadata["optim.kind"], "adam");
  assert.equal(st.metadata["optim.slots"], '["G","D"]');
  // A fresh optimizer over a copy of the parameters, loaded from host copies of the state.
  const host = await readMany(Object.values(st.tensors));
  const b = model();
  backend().copy(a.data.storageFor("t"), 0, b.data.storageFor("t"), 0, a.size * 4);
  const optB = new Adam(b, { lr: 0.1, stateSharing: "per-group" });
  optB.loadState({
    tensors: Object.fromEntries(
      Object.keys(st.tensors).map((k, i) => [k, host[i] as Float32Array]),
    ),
    metadata: st.metadata,
  });
  for (const [flat, opt] of [[a, optA], [b, optB]] as const) {
    setGrads(flat, grads[1][0], grads[1][1]);
    opt.step();
  }
  const [va, vb] = [await values(a), await values(b)];
  assert.deepEqual(va, vb);
  assert.deepEqual(Array.from(await optB.stepCounts().data()), [3, 2]);
  // Mismatches are reported together, before anything is written.
  const shared = new Adam(b, { lr: 0.1 });
  assert.throws(
    () => shared.loadState({ tensors: { "optim.m": new Float32Array(3) }, metadata: st.metadata }),
    (e: Error) =>
      /optim.stateSharing is 'per-group', expected 'shared'/.test(e.message) &&
      /optim.slots is '\["G","D"\]', expected '\["shared"\]'/.test(e.message) &&
      /'optim.steps' is missing/.test(e.message) &&
      /'optim.m' has 3 f32 values, expected 128 f32/.test(e.message),
  );
  for (const t of Object.values(st.tensors)) t.dispose();
  for (const o of [optA, optB, shared]) o.dispose();
  a.dispose();
  b.dispose();
});

Deno.test("schedules: constant, linear warmup/decay, cosine, step", () => {
  assert.equal(constantLr(0.1)(1000), 0.1);
  const lin = linearLr({ lr: 1, warmupSteps: 4, totalSteps: 14, finalLr: 0.5 });
  assertClose(
    [0, 1, 3, 4, 9, 14, 100].map(lin),
    [0.25, 0.5, 1, 1, 0.75, 0.5, 0.5],
    1e-12,
    0,
    "linear",
  );
  const cos = cosineLr({ lr: 1, totalSteps: 10 });
  assertClose([0, 5, 10, 20].map(cos), [1, 0.5, 0, 0], 1e-12, 0, "cosine");
  const st = stepLr({ lr: 1, stepSize: 3, gamma: 0.5 });
  assertClose([0, 2, 3, 6, 7].map(st), [1, 1, 0.5, 0.25, 0.25], 1e-12, 0, "step");
});
