/**
 * One encoder-decoder training step of the nmt task: batch 32, source and target length 20,
 * vocabularies 5000, on autoloss (tasks/nmt/model.ts) and on TF.js's WebGPU backend on the same
 * adapter (a hand-written equivalent with TF.js ops: same architecture, Adam, global-norm clip).
 *
 * The model: embeddings E, a bidirectional LSTM encoder of L layers with H units per direction,
 * an L-layer LSTM decoder (H units) whose initial state is a tanh bridge of the encoder's final
 * states, Luong "general" attention with the attentional state `tanh(W_c [c; h])`, an output
 * layer to the vocabulary, token cross-entropy, global-norm clip 1, Adam (lr 1e-3). Dropout is
 * off on both sides (its masks would be drawn differently). Defaults are the paper's sizes
 * (E 128, H 256, L 2); `--emb`, `--hidden`, `--layers` change them.
 *
 * Timing: each iteration is one step followed by a wait for the GPU; after `--warmup`
 * iterations (kernel compilation), `--iters` timed iterations alternate between the two
 * implementations, so drifting machine load biases neither; medians are reported.
 *
 * Run: `npx -y deno@2.9.6 run -A --no-lock bench/nmt_step.ts [--iters=5] [--warmup=2] [--no-peer]
 * [--emb=128] [--hidden=256] [--layers=2] [--json]`
 * @module
 */

import { parseArgs } from "node:util";
import { backend, init } from "../gpu/backend.ts";
import { FlatParams } from "../nn/module.ts";
import { Adam, clipGradNorm } from "../nn/optim.ts";
import { readMany, tidy } from "../tensor/tensor.ts";
import { disposeBatch, makeBatch, Seq2Seq } from "../tasks/nmt/model.ts";
import { initTfjs, tfjsSync } from "./tfjs_peer.ts";
// deno-lint-ignore no-import-prefix
import * as tf from "npm:@tensorflow/tfjs-core@4.22.0";

/** Shape of the benchmarked step. */
export interface NmtStepShape {
  /** Batch size. */
  batch: number;
  /** Source and target length. */
  length: number;
  /** Source and target vocabulary size. */
  vocab: number;
  /** Embedding size. */
  emb: number;
  /** LSTM units (per direction in the encoder). */
  hidden: number;
  /** Encoder and decoder layers. */
  layers: number;
}

/** A benchmarkable step. */
export interface StepWorkload {
  /** Records one training step (does not wait). */
  step(): void;
  /** Waits for the GPU. */
  sync(): Promise<void>;
  /** The loss of the last step (reads it back). */
  loss(): Promise<number>;
  /** Frees everything. */
  dispose(): void;
}

/** Deterministic token ids in [4, vocab). */
function ids(n: number, vocab: number, seed: number): number[] {
  let a = seed >>> 0;
  return Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return 4 + (a % (vocab - 4));
  });
}

/** The autoloss step (tasks/nmt/model.ts with one decoder). */
export function autolossStep(s: NmtStepShape): StepWorkload {
  const model = new Seq2Seq({
    srcVocab: s.vocab,
    decoders: { mt: s.vocab },
    emb: s.emb,
    hidden: s.hidden,
    encoderLayers: s.layers,
    decoderHidden: s.hidden,
    decoderLayers: s.layers,
    dropout: 0,
  }, 1);
  const flat = new FlatParams(model.namedParameters(), model.paramGroups());
  const opt = new Adam(flat, { lr: 1e-3 });
  const src = Array.from({ length: s.batch }, (_, r) => ids(s.length, s.vocab, r + 1));
  // Target of length - 1 so that BOS + target (and target + EOS) are `length` long.
  const tgt = Array.from({ length: s.batch }, (_, r) => ids(s.length - 1, s.vocab, r + 1001));
  const batch = makeBatch(src, tgt);
  let last = tidy(() => model.loss("mt", batch).reshape([1]));
  return {
    step() {
      last.dispose();
      last = tidy(() => {
        flat.zeroGrad();
        const loss = model.loss("mt", batch);
        loss.backward();
        clipGradNorm(flat, 1);
        opt.step("all");
        return loss.detach().reshape([1]);
      });
    },
    sync: () => backend().sync(),
    async loss() {
      return (await readMany([last]))[0][0];
    },
    dispose() {
      last.dispose();
      disposeBatch(batch);
      opt.dispose();
      flat.dispose();
    },
  };
}

/** The TF.js step: the same model written with TF.js ops (dropout off, Adam, clip 1). */
export function tfjsStep(s: NmtStepShape): StepWorkload {
  const { batch: b, length: t, vocab: v, emb: e, hidden: h, layers: l } = s;
  let seed = 7;
  const u = (shape: number[], fan: number) =>
    tf.variable(
      tf.randomUniform(shape, -1 / Math.sqrt(fan), 1 / Math.sqrt(fan), "float32", seed++),
    );
  const srcEmb = tf.variable(tf.randomNormal([v, e], 0, 0.1, "float32", seed++));
  const tgtEmb = tf.variable(tf.randomNormal([v, e], 0, 0.1, "float32", seed++));
  // LSTM weights as [in + h, 4h] (TF.js layout), gates i, f, g, o.
  const cell = (input: number) => ({ w: u([input + h, 4 * h], h), b: u([4 * h], h) });
  const enc = Array.from({ length: l }, (_, k) => [cell(k ? 2 * h : e), cell(k ? 2 * h : e)]);
  const dec = Array.from({ length: l }, (_, k) => cell(k ? h : e));
  const bridgeH = { w: u([2 * h, h], 2 * h), b: u([h], 2 * h) };
  const bridgeC = { w: u([2 * h, h], 2 * h), b: u([h], 2 * h) };
  const attW = u([h, 2 * h], 2 * h);
  const combine = u([3 * h, h], 3 * h);
  const out = { w: u([h, v], h), b: u([v], h) };
  const vars: tf.Variable[] = [
    srcEmb,
    tgtEmb,
    ...enc.flat().flatMap((c) => [c.w, c.b]),
    ...dec.flatMap((c) => [c.w, c.b]),
    bridgeH.w,
    bridgeH.b,
    bridgeC.w,
    bridgeC.b,
    attW,
    combine,
    out.w,
    out.b,
  ];
  const src = tf.tensor2d(
    Array.from({ length: b }, (_, r) => ids(t, v, r + 1)).flat(),
    [b, t],
    "int32",
  );
  const tgtRows = Array.from({ length: b }, (_, r) => ids(t - 1, v, r + 1001));
  const tgtIn = tf.tensor2d(tgtRows.map((row) => [2, ...row]).flat(), [b, t], "int32");
  const tgtOut = tf.tensor2d(tgtRows.map((row) => [...row, 3]).flat(), [b, t], "int32");
  const step1 = (
    x: tf.Tensor2D,
    hc: [tf.Tensor2D, tf.Tensor2D],
    c: { w: tf.Variable; b: tf.Variable },
  ) => {
    const gates = tf.add(tf.matMul(tf.concat([x, hc[0]], 1), c.w), c.b) as tf.Tensor2D;
    const [i, f, g, o] = tf.split(gates, 4, 1);
    const cNew = tf.add(
      tf.mul(tf.sigmoid(f), hc[1]),
      tf.mul(tf.sigmoid(i), tf.tanh(g)),
    ) as tf.Tensor2D;
    return [tf.mul(tf.sigmoid(o), tf.tanh(cNew)) as tf.Tensor2D, cNew] as [
      tf.Tensor2D,
      tf.Tensor2D,
    ];
  };
  const zero = () => [tf.zeros([b, h]), tf.zeros([b, h])] as [tf.Tensor2D, tf.Tensor2D];
  const lossFn = (): tf.Scalar => {
    // Encoder.
    let xs: tf.Tensor2D[] = tf.unstack(tf.gather(srcEmb, src), 1) as tf.Tensor2D[];
    const finals: [tf.Tensor2D, tf.Tensor2D][] = [];
    for (let k = 0; k < l; k++) {
      const fw: tf.Tensor2D[] = [];
      const bw: tf.Tensor2D[] = new Array(t);
      let st = zero();
      for (let j = 0; j < t; j++) fw.push((st = step1(xs[j], st, enc[k][0]))[0]);
      const fwFinal = st;
      st = zero();
      for (let j = t - 1; j >= 0; j--) bw[j] = (st = step1(xs[j], st, enc[k][1]))[0];
      finals.push([tf.concat([fwFinal[0], st[0]], 1), tf.concat([fwFinal[1], st[1]], 1)]);
      xs = fw.map((f, j) => tf.concat([f, bw[j]], 1));
    }
    const memory = tf.stack(xs, 1) as tf.Tensor3D; // [b, t, 2h]
    // Decoder.
    let ys: tf.Tensor2D[] = tf.unstack(tf.gather(tgtEmb, tgtIn), 1) as tf.Tensor2D[];
    for (let k = 0; k < l; k++) {
      let st: [tf.Tensor2D, tf.Tensor2D] = [
        tf.tanh(tf.add(tf.matMul(finals[k][0], bridgeH.w), bridgeH.b)),
        tf.tanh(tf.add(tf.matMul(finals[k][1], bridgeC.w), bridgeC.b)),
      ];
      ys = ys.map((y) => (st = step1(y, st, dec[k]))[0]);
    }
    const q = tf.stack(ys, 1) as tf.Tensor3D; // [b, t, h]
    const scores = tf.matMul(
      tf.reshape(tf.matMul(tf.reshape(q, [b * t, h]), attW), [b, t, 2 * h]),
      memory,
      false,
      true,
    );
    const context = tf.matMul(tf.softmax(scores), memory); // [b, t, 2h]
    const att = tf.tanh(tf.matMul(tf.reshape(tf.concat([context, q], 2), [b * t, 3 * h]), combine));
    const logits = tf.add(tf.matMul(att, out.w), out.b);
    const logp = tf.logSoftmax(logits);
    const onehot = tf.oneHot(tf.reshape(tgtOut, [b * t]), v);
    return tf.neg(tf.mean(tf.sum(tf.mul(logp, onehot), 1))) as tf.Scalar;
  };
  const optimizer = tf.train.adam(1e-3);
  let last: tf.Scalar = tf.scalar(0);
  return {
    step() {
      last.dispose();
      last = tf.tidy(() => {
        const { value, grads } = tf.variableGrads(lossFn, vars);
        const names = Object.keys(grads);
        const norm = tf.sqrt(tf.addN(names.map((n) => tf.sum(tf.square(grads[n])))));
        const scale = tf.minimum(1, tf.div(1, tf.add(norm, 1e-6)));
        optimizer.applyGradients(
          names.map((name) => ({ name, tensor: tf.mul(grads[name], scale) })),
        );
        return tf.keep(value);
      });
    },
    sync: tfjsSync,
    async loss() {
      return (await last.data())[0];
    },
    dispose() {
      last.dispose();
      optimizer.dispose();
      tf.dispose([src, tgtIn, tgtOut, ...vars]);
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      iters: { type: "string", default: "5" },
      warmup: { type: "string", default: "2" },
      emb: { type: "string", default: "128" },
      hidden: { type: "string", default: "256" },
      layers: { type: "string", default: "2" },
      "no-peer": { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const shape: NmtStepShape = {
    batch: 32,
    length: 20,
    vocab: 5000,
    emb: Number(values.emb),
    hidden: Number(values.hidden),
    layers: Number(values.layers),
  };
  await init();
  const impls: [string, StepWorkload][] = [];
  const log = (s: string) => console.error(s);
  const ours = autolossStep(shape);
  const dispatches0 = backend().stats.dispatches;
  ours.step();
  await ours.sync();
  const perStep = backend().stats.dispatches - dispatches0;
  impls.push(["autoloss", ours]);
  if (!values["no-peer"]) {
    await initTfjs();
    impls.push(["tfjs", tfjsStep(shape)]);
  }
  const times = new Map<string, number[]>(impls.map(([n]) => [n, []]));
  for (const [name, w] of impls) {
    for (let i = 0; i < Number(values.warmup); i++) {
      const t0 = performance.now();
      w.step();
      await w.sync();
      log(
        `${name} warmup ${i}: ${(performance.now() - t0).toFixed(0)} ms, loss ${
          (await w.loss()).toFixed(4)
        }`,
      );
    }
  }
  for (let i = 0; i < Number(values.iters); i++) {
    for (const [name, w] of impls) {
      const t0 = performance.now();
      w.step();
      await w.sync();
      const ms = performance.now() - t0;
      times.get(name)!.push(ms);
      log(`${name} step ${i}: ${ms.toFixed(0)} ms`);
    }
  }
  const losses = await Promise.all(impls.map(([, w]) => w.loss()));
  const result = {
    shape,
    adapter: (await navigator.gpu.requestAdapter())?.info?.description ?? "",
    load: Deno.loadavg(),
    dispatchesPerStep: perStep,
    ms: Object.fromEntries(impls.map(([n]) => [n, median(times.get(n)!)])),
    msMin: Object.fromEntries(impls.map(([n]) => [n, Math.min(...times.get(n)!)])),
    lastLoss: Object.fromEntries(impls.map(([n], i) => [n, losses[i]])),
  };
  for (const [, w] of impls) w.dispose();
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    const ours = result.ms.autoloss;
    const peer = result.ms.tfjs;
    console.log(
      [
        `nmt training step, batch ${shape.batch}, length ${shape.length}, vocab ${shape.vocab}, ` +
        `emb ${shape.emb}, hidden ${shape.hidden}, layers ${shape.layers} (load ${
          result.load.map((x) => x.toFixed(1)).join(" ")
        })`,
        "",
        "| implementation | median ms/step | min ms/step |",
        "|---|---|---|",
        ...impls.map(([n]) =>
          `| ${n} | ${result.ms[n].toFixed(0)} | ${result.msMin[n].toFixed(0)} |`
        ),
        "",
        `autoloss dispatches per step: ${perStep}`,
        ...(peer
          ? [
            `speed ratio (TF.js ms / autoloss ms; > 1: autoloss faster): ${
              (peer / ours).toFixed(2)
            }`,
          ]
          : []),
      ].join("\n"),
    );
  }
}
