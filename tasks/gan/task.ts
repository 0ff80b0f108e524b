/**
 * The GAN as an AutoLoss {@link ScheduleTask} (paper sections 4.2 and 5.1.2): a DCGAN
 * (tasks/gan/model.ts) whose every step is either a generator update or a discriminator update
 * (actions `[G, D]`), with one Adam over both parameter groups. Steps take GPU actions (both
 * branches recorded in gated regions, no host sync) or host actions (only the chosen branch);
 * losses, lazy gradient norms, the inception score and the collapse/NaN flags are kept on the
 * GPU. The actions, losses, features and the collapse rule: tasks/gan/README.md.
 * @module
 */

import * as ops from "../../tensor/ops.ts";
import { backend } from "../../gpu/backend.ts";
import type { HostDataset } from "../../nn/data/batches.ts";
import { BatchIterator } from "../../nn/data/batches.ts";
import { Generator } from "../../gpu/random.ts";
import { bceWithLogits } from "../../nn/losses.ts";
import { Adam, gradNorm, type StateSharing } from "../../nn/optim.ts";
import type { Checkpoint } from "../../nn/checkpoint.ts";
import { featureSet } from "../../rl/feature_sets.ts";
import { type GanTaskMeta, legacyStateVector, STATE } from "./state.ts";
import type { Action, ScheduleTask } from "../../rl/task.ts";
import { compare, full, randn, tensor, zeros } from "../../tensor/functional.ts";
import { whenGpu } from "../../tensor/gated.ts";
import { keep, noGrad, Tensor, tidy } from "../../tensor/tensor.ts";
import { Dcgan, type DcganArch } from "./model.ts";
import { type ImageClassifier, inceptionScore } from "./scoring.ts";
import { D_ACTION, G_ACTION, GAN_ACTIONS, ganFeatureNames, type GanFeatureSet } from "./actions.ts";

/** Options of {@link GanTask}. */
export interface GanTaskOptions {
  /** The DCGAN architecture. */
  arch: DcganArch;
  /** Training images in [-1, 1] (`h = w = 28`). */
  data: HostDataset;
  /** Batch size of both steps. */
  batchSize: number;
  /** Adam learning rate (authors: 2e-4). */
  lr: number;
  /** Adam betas (authors: [0.5, 0.999]). */
  betas: [number, number];
  /** Adam step counters shared by G and D (authors) or one per group. Default "shared". */
  stateSharing?: StateSharing;
  /** Feature set (default "authors"). */
  features?: GanFeatureSet;
  /** T of the progress feature t/T (default 10000). */
  totalSteps?: number;
  /** EMA decay of the loss features (authors' `state_decay`: 0.9). */
  stateDecay?: number;
  /** EMA decay of the IS features (paper set; default 0.9). */
  isDecay?: number;
  /** Subtracted from the IS in the authors' features (8 for MNIST). */
  isOffset?: number;
  /** The IS classifier (null: no IS; the IS features stay 0). */
  classifier?: ImageClassifier | null;
  /** Generated images per IS evaluation (a multiple of `isSplits`; default 1000). */
  isSamples?: number;
  /** IS splits (default 5). */
  isSplits?: number;
  /** Evaluate the IS after every `isEvery` steps inside `step()` (0: only `evaluateIs()`). */
  isEvery?: number;
  /** Collapse: the same action more than this many times in a row (authors: 500). */
  maxRun?: number;
}

/** The GAN ScheduleTask (see tasks/gan/README.md). */
export class GanTask implements ScheduleTask {
  /** Registry name. */
  readonly name = "gan";
  /** [G, D]. */
  readonly actions: readonly Action[] = GAN_ACTIONS;
  /** One GAN. */
  readonly population = 1;
  /** Feature names of the selected set. */
  readonly featureNames: readonly string[];
  /** Options in effect. */
  readonly opts: Required<GanTaskOptions>;
  /** The networks (rebuilt by `reset`). */
  model!: Dcgan;
  /** One Adam over G and D. */
  optimizer!: Adam;
  /** The real-data iterator. */
  iterator!: BatchIterator;
  #t = 0;
  #seed = 0;
  #isCount = 0;
  #noise = new Generator(0);
  #ones: Tensor;
  #zeros: Tensor;
  #actionConst: Tensor[];
  // GPU state (kept).
  #state!: Tensor; // [16] STATE: losses, EMAs, lazy grads and losses, flags
  #is!: Tensor; // [2] IS mean, std
  #isHist!: Tensor; // [6] val, ema0, ema1, ema2, prev0, prev1
  #features: Tensor | null = null;

  /** Builds the task and resets it with seed 0. */
  constructor(opts: GanTaskOptions) {
    this.opts = {
      stateSharing: "shared",
      features: "authors",
      totalSteps: 10000,
      stateDecay: 0.9,
      isDecay: 0.9,
      isOffset: 8,
      classifier: null,
      isSamples: 1000,
      isSplits: 5,
      isEvery: 0,
      maxRun: 500,
      ...opts,
    };
    const o = this.opts;
    if (o.data.h !== 28 || o.data.w !== 28) {
      throw new Error(`GanTask: images must be 28x28, got ${o.data.h}x${o.data.w}`);
    }
    if (o.isSamples % o.isSplits !== 0) {
      throw new Error(
        `GanTask: isSamples ${o.isSamples} must be a multiple of isSplits ${o.isSplits}`,
      );
    }
    this.featureNames = ganFeatureNames(o.features);
    this.#ones = keep(full([o.batchSize, 1], 1));
    this.#zeros = keep(full([o.batchSize, 1], 0));
    this.#actionConst = [keep(full([1], G_ACTION, "i32")), keep(full([1], D_ACTION, "i32"))];
    this.reset(0);
  }

  /** Steps taken since the last reset. */
  get t(): number {
    return this.#t;
  }

  /** The seed of the last reset. */
  get seed(): number {
    return this.#seed;
  }

  /** IS evaluations since the last reset. */
  get isCount(): number {
    return this.#isCount;
  }

  /**
   * Re-initializes G, D and Adam from `seed`, restarts the data order (seeded by `seed`) and the
   * noise stream, and clears all feature state.
   */
  reset(seed: number): void {
    const o = this.opts;
    this.#disposeModel();
    this.#seed = seed >>> 0;
    this.model = new Dcgan(o.arch, this.#seed);
    this.optimizer = new Adam(this.model.flat, {
      lr: o.lr,
      betas: o.betas,
      stateSharing: o.stateSharing,
    });
    this.iterator = new BatchIterator(o.data, { batchSize: o.batchSize, seed: this.#seed });
    this.#noise = new Generator((this.#seed ^ 0x6a09e667) >>> 0);
    this.#t = 0;
    this.#isCount = 0;
    const init = new Float32Array(STATE.size);
    init[STATE.flags + 1] = -1; // no last action yet
    this.#state = keep(tensor(init, [STATE.size]));
    this.#is = keep(zeros([2]));
    this.#isHist = keep(zeros([6]));
    this.#invalidate();
  }

  #invalidate(): void {
    this.#features?.dispose();
    this.#features = null;
  }

  #stateTensors(): Tensor[] {
    return [this.#state, this.#is, this.#isHist].filter((t) => t);
  }

  #disposeModel(): void {
    if (!this.model) return;
    this.optimizer.dispose();
    this.model.dispose();
    for (const t of this.#stateTensors()) t.dispose();
    this.#invalidate();
  }

  /** Noise for step t's branch (`2t` D, `2t + 1` G): reproducible from (seed, t). */
  #z(branch: number): Tensor {
    this.#noise.counter = 2 * this.#t + branch;
    return randn([this.opts.batchSize, this.opts.arch.zDim], 0, 1, this.#noise);
  }

  /** D's accuracy on logits [B, 1] whose label is `real`: a [1] tensor. */
  #accuracy(logits: Tensor, real: boolean): Tensor {
    return compare(real ? "gt" : "lt", logits, 0).mean().reshape([1]);
  }

  /**
   * The D branch: D update on l_D; returns the measured vector [gen_cost, d_real, d_fake,
   * acc_real, acc_fake], l_D and the normalized D gradient norm.
   */
  #dBranch(real: Tensor): { m: Tensor; grad: Tensor } {
    const { model, opts } = this;
    const b = opts.batchSize;
    const fake = noGrad(() => model.gen.forward(this.#z(0)));
    let lr: Tensor, lf: Tensor;
    if (opts.arch.dBatchNorm) {
      lr = model.disc.forward(real);
      lf = model.disc.forward(fake);
    } else {
      // No batch norm: one forward over [real; fake] is the same math with fewer dispatches.
      const both = model.disc.forward(ops.concat([real, fake], 0));
      lr = ops.slice(both, [0, 0], [b, 1]);
      lf = ops.slice(both, [b, 0], [2 * b, 1]);
    }
    const dReal = bceWithLogits(lr, this.#ones);
    const dFake = bceWithLogits(lf, this.#zeros);
    const loss = dReal.add(dFake).mul(0.5);
    model.flat.zeroGrad();
    loss.backward();
    const grad = gradNorm(model.flat, "D").mul(1 / Math.sqrt(this.#groupSize("D")));
    this.optimizer.step("D");
    const m = noGrad(() =>
      ops.concat([
        bceWithLogits(lf.detach(), this.#ones).reshape([1]),
        dReal.detach().reshape([1]),
        dFake.detach().reshape([1]),
        this.#accuracy(lr.detach(), true),
        this.#accuracy(lf.detach(), false),
      ], 0)
    );
    return { m, grad: grad.reshape([1]) };
  }

  /** The G branch: G update on l_G (D's weight gradients skipped); same outputs as the D branch. */
  #gBranch(real: Tensor): { m: Tensor; grad: Tensor } {
    const { model } = this;
    const dParams = model.disc.parameters();
    model.flat.zeroGrad();
    for (const p of dParams) p.requiresGrad = false;
    let lf: Tensor, loss: Tensor;
    try {
      lf = model.disc.forward(model.gen.forward(this.#z(1)));
      loss = bceWithLogits(lf, this.#ones);
      loss.backward();
    } finally {
      for (const p of dParams) p.requiresGrad = true;
    }
    const grad = gradNorm(model.flat, "G").mul(1 / Math.sqrt(this.#groupSize("G")));
    this.optimizer.step("G");
    const m = noGrad(() => {
      const lr = model.disc.forward(real);
      const fake = lf.detach();
      return ops.concat([
        loss.detach().reshape([1]),
        bceWithLogits(lr, this.#ones).reshape([1]),
        bceWithLogits(fake, this.#zeros).reshape([1]),
        this.#accuracy(lr, true),
        this.#accuracy(fake, false),
      ], 0);
    });
    return { m, grad: grad.reshape([1]) };
  }

  #groupSize(group: "G" | "D"): number {
    return group === "G" ? this.model.counts().G : this.model.counts().D;
  }

  /**
   * Records one training step. `actions` (one entry: 0 = G, 1 = D) on the host records only that
   * branch; as an i32 GPU tensor it records both branches, each in a gated region on the GPU
   * (see tasks/gan/README.md).
   * Never awaits. Every `isEvery` steps the IS is evaluated afterwards.
   */
  step(actions: Tensor | Int32Array): void {
    tidy(() => {
      const batch = this.iterator.next();
      batch.y.dispose();
      const real = batch.x;
      let action: Tensor;
      let out: { m: Tensor; grad: Tensor; isD: Tensor };
      if (actions instanceof Tensor) {
        action = actions.reshape([1]);
        const isD = action.cast("f32");
        const d = whenGpu(isD, () => this.#dBranch(real));
        const g = whenGpu(isD.neg().add(1), () => this.#gBranch(real));
        const pick = (x: Tensor, y: Tensor) => ops.where(isD, x, y);
        out = { m: pick(d.m, g.m), grad: pick(d.grad, g.grad), isD };
      } else {
        if (actions.length !== 1 || (actions[0] !== G_ACTION && actions[0] !== D_ACTION)) {
          throw new Error(`GanTask.step: expected one action 0 (G) or 1 (D), got [${actions}]`);
        }
        const a = actions[0];
        action = this.#actionConst[a];
        const r = a === D_ACTION ? this.#dBranch(real) : this.#gBranch(real);
        out = { ...r, isD: full([1], a) };
      }
      this.#record(action, out);
    });
    this.#t++;
    this.#invalidate();
    if (this.opts.isEvery > 0 && this.#t % this.opts.isEvery === 0) this.evaluateIs();
  }

  /** Elements `[at, at + n)` of the state vector (a pending view in the caller's scope). */
  #slot(at: number, n = 1): Tensor {
    return ops.slice(this.#state, [at], [at + n]);
  }

  /**
   * Folds one step's measurements into the GPU state (inside the step's tidy scope): the next
   * state vector is one concat of elementwise expressions of the old one, so one kernel.
   */
  #record(action: Tensor, o: { m: Tensor; grad: Tensor; isD: Tensor }): void {
    const beta = this.opts.stateDecay;
    noGrad(() => {
      const first = this.#t === 0;
      const s = (at: number, n = 1) => this.#slot(at, n);
      const m = (i: number, n = 1) => ops.slice(o.m, [i], [i + n]);
      const lossPart = m(0, 3);
      const isG = o.isD.neg().add(1);
      // Lazy history: the entry of the action taken ([G, D] order) is replaced; the step's loss
      // is l_G = gen_cost on G steps, l_D = (d_real + d_fake) / 2 on D steps.
      const lazy = (at: number, vG: Tensor, vD: Tensor) => [
        ops.where(isG, vG, s(at)),
        ops.where(o.isD, vD, s(at + 1)),
      ];
      // Collapse and NaN detection: run length, last action, G count, non-finite steps.
      const f = STATE.flags;
      const a = action.cast("f32");
      const same = compare("eq", a, s(f + 1));
      const nonFinite = (x: Tensor) => ops.unary("isnan", x).add(ops.unary("isinf", x));
      const bad = [m(1), m(2), m(3), m(4), o.grad].reduce(
        (acc, x) => acc.add(nonFinite(x)),
        nonFinite(m(0)),
      );
      const next = ops.concat([
        o.m,
        first ? lossPart : s(STATE.ema, 3).mul(beta).add(lossPart.mul(1 - beta)),
        ...lazy(STATE.grads, o.grad, o.grad),
        ...lazy(STATE.lazyLoss, m(0), m(1).add(m(2)).mul(0.5)),
        s(f).mul(same).add(1),
        a,
        s(f + 2).add(isG),
        s(f + 3).add(ops.scalarOp("step", bad, 0)),
      ], 0);
      this.#state.dispose();
      this.#state = keep(next);
    });
  }

  /**
   * Evaluates the inception score of `isSamples` images from G (evaluation mode) with the task's
   * classifier, on the GPU, and records it in the IS features. No-op without a classifier. The
   * noise is indexed by the evaluation number, so it is reproducible.
   */
  evaluateIs(): void {
    const c = this.opts.classifier;
    if (!c) return;
    const o = this.opts;
    const beta = o.isDecay;
    const n = this.#isCount;
    const gen = new Generator((this.#seed ^ 0x3c6ef372) >>> 0, n * 64);
    const score = tidy(() => {
      const images = this.sample(o.isSamples, gen);
      return keep(inceptionScore(c, images, o.isSplits));
    });
    this.#is.dispose();
    this.#is = score;
    // IS history: x0 = IS, x1 = x0 - prev x0, x2 = x1 - prev x1, each with an EMA that starts
    // at its first defined value (as rl/features.ts FeatureHistory.recordValidation).
    const next = noGrad(() =>
      tidy(() => {
        const h = this.#isHist;
        const at = (i: number) => ops.slice(h, [i], [i + 1]);
        const x0 = ops.slice(score, [0], [1]);
        const ema = (i: number, x: Tensor, firstTime: boolean) =>
          firstTime ? x : at(i).mul(beta).add(x.mul(1 - beta));
        const x1 = n >= 1 ? x0.sub(at(4)) : null;
        const x2 = n >= 2 && x1 ? x1.sub(at(5)) : null;
        return ops.concat([
          x0,
          ema(1, x0, n === 0),
          x1 ? ema(2, x1, n === 1) : at(2),
          x2 ? ema(3, x2, n === 2) : at(3),
          x0,
          x1 ?? at(5),
        ], 0);
      })
    );
    this.#isHist.dispose();
    this.#isHist = keep(next);
    this.#isCount++;
    this.#invalidate();
  }

  /**
   * `n` images [n, 1, 28, 28] from G in evaluation mode (batch norm uses running statistics),
   * generated 500 at a time from `gen` (or from fixed noise `z` [n, zDim]). No autograd.
   */
  sample(n: number, gen?: Generator, z?: Tensor): Tensor {
    const g = this.model.gen;
    g.eval();
    try {
      return noGrad(() =>
        tidy(() => {
          const parts: Tensor[] = [];
          for (let at = 0; at < n; at += 500) {
            const m = Math.min(500, n - at);
            const noise = z
              ? ops.slice(z, [at, 0], [at + m, z.shape[1]])
              : randn([m, this.opts.arch.zDim], 0, 1, gen);
            parts.push(g.forward(noise));
          }
          return parts.length === 1 ? parts[0] : ops.concat(parts, 0);
        })
      );
    } finally {
      g.train();
    }
  }

  /** The features [1, K] of the selected set (owned by the task; valid until the next step). */
  features(): Tensor {
    if (this.#features) return this.#features;
    this.#features = keep(noGrad(() => tidy(() => this.#computeFeatures())));
    return this.#features;
  }

  #computeFeatures(): Tensor {
    const k = this.featureNames.length;
    if (this.opts.features === "authors") {
      if (this.#t === 0) return zeros([1, k]);
      const e = (i: number) => this.#slot(STATE.ema + i);
      const g = (i: number) => this.#slot(STATE.grads + i);
      return featureSet("authors-gan", { isOffset: this.opts.isOffset }).compute({
        gradG: g(0),
        gradD: g(1),
        genCostEma: e(0),
        dRealEma: e(1),
        dFakeEma: e(2),
        inceptionScore: ops.slice(this.#is, [0], [1]),
      });
    }
    const progress = tensor(new Float32Array([this.#t / Math.max(this.opts.totalSteps, 1)]), [1]);
    const gG = this.#slot(STATE.grads);
    const gD = this.#slot(STATE.grads + 1);
    const lG = this.#slot(STATE.lazyLoss);
    const lD = this.#slot(STATE.lazyLoss + 1);
    const both = ops.scalarOp("step", gG, 0).mul(ops.scalarOp("step", gD, 0));
    const logRatio = ops.where(both, gG.div(ops.where(both, gD, full([1], 1))).log(), full([1], 0));
    const lossOk = ops.scalarOp("step", lD, 0);
    const lossRatio = ops.where(lossOk, lG.div(ops.where(lossOk, lD, full([1], 1))), full([1], 0));
    const acc = this.#slot(STATE.losses + 3).add(this.#slot(STATE.losses + 4)).mul(0.5);
    return ops.concat([
      progress,
      this.#slot(STATE.grads, 2),
      this.#slot(STATE.lazyLoss, 2),
      ops.slice(this.#isHist, [0], [4]),
      logRatio,
      lossRatio,
      acc,
    ], 0).reshape([1, k]);
  }

  /**
   * Scalar metrics, each [1] (views or small tensors in the caller's scope): `gen_cost`,
   * `disc_cost` (l_D), `d_real`, `d_fake`, `d_accuracy`, `grad_g`, `grad_d`, `is`, `is_std`,
   * `g_share` (share of G actions so far), `run` (length of the current run of one action),
   * `collapsed` (1 once `run` exceeds `maxRun`), `nonfinite` (non-finite steps so far).
   */
  metrics(): Record<string, Tensor> {
    return noGrad(() => {
      const l = (i: number) => this.#slot(STATE.losses + i);
      const f = (i: number) => this.#slot(STATE.flags + i);
      return {
        gen_cost: l(0),
        disc_cost: l(1).add(l(2)).mul(0.5),
        d_real: l(1),
        d_fake: l(2),
        d_accuracy: l(3).add(l(4)).mul(0.5),
        grad_g: this.#slot(STATE.grads),
        grad_d: this.#slot(STATE.grads + 1),
        is: ops.slice(this.#is, [0], [1]),
        is_std: ops.slice(this.#is, [1], [2]),
        // Uploaded, not baked: a per-step constant in a kernel would compile one per step.
        g_share: f(2).mul(tensor(Float32Array.of(1 / Math.max(this.#t, 1)), [1])),
        run: f(0),
        collapsed: ops.scalarOp("step", f(0), this.opts.maxRun),
        nonfinite: f(3),
      };
    });
  }

  /**
   * The raw state in one [11] tensor (caller's scope), for one cheap read per step; decode it with
   * {@link decodeStatus}.
   */
  status(): Tensor {
    return noGrad(() =>
      ops.concat([this.#slot(STATE.losses, 5), this.#is, this.#slot(STATE.flags, 4)], 0)
    );
  }

  /** The length of the current run of one action, [1] (a view in the caller's scope). */
  runLength(): Tensor {
    return this.#slot(STATE.flags);
  }

  // ---------------------------------------------------------------- checkpoints

  /**
   * Everything needed to continue exactly: named GPU tensors (parameters, batch-norm statistics,
   * Adam state, feature state; views owned by the task) and plain metadata.
   */
  checkpointState(prefix = "task."): {
    tensors: Record<string, Tensor>;
    metadata: Record<string, string>;
  } {
    const tensors: Record<string, Tensor> = {};
    const model = this.model;
    for (const [n, t] of [...model.flat.names.map((n, i) => [n, model.flat.params[i]] as const)]) {
      tensors[`${prefix}param.${n}`] = t;
    }
    for (const [n, t] of model.buffers()) tensors[`${prefix}buffer.${n}`] = t;
    const opt = this.optimizer.state(`${prefix}optim.`);
    Object.assign(tensors, opt.tensors);
    const state: Record<string, Tensor> = {
      vector: this.#state,
      is: this.#is,
      isHist: this.#isHist,
    };
    for (const [n, t] of Object.entries(state)) tensors[`${prefix}state.${n}`] = t;
    const meta: GanTaskMeta = {
      t: this.#t,
      isCount: this.#isCount,
      iterator: this.iterator.state(),
      seed: this.#seed,
    };
    return {
      tensors,
      metadata: { ...opt.metadata, [`${prefix}meta`]: JSON.stringify(meta) },
    };
  }

  /**
   * Restores a state saved by {@link GanTask.checkpointState} (through a checkpoint file). The
   * architecture must match (checked by name and shape); everything is checked before writing.
   */
  loadCheckpoint(ckpt: Checkpoint, prefix = "task."): void {
    const metaText = ckpt.metadata[`${prefix}meta`];
    if (!metaText) throw new Error(`checkpoint has no '${prefix}meta' entry: not a GAN checkpoint`);
    const meta = JSON.parse(metaText) as GanTaskMeta;
    this.reset(meta.seed);
    const { tensors } = this.checkpointState(prefix);
    const problems: string[] = [];
    const writes: [Tensor, Float32Array | Int32Array][] = [];
    const legacy = legacyStateVector(ckpt, prefix);
    for (const [n, t] of Object.entries(tensors)) {
      if (n.startsWith(`${prefix}optim.`)) continue;
      const src = ckpt.tensors.get(n) ?? (n === `${prefix}state.vector` ? legacy : undefined);
      if (!src) problems.push(`missing '${n}'`);
      else if (src.data.length !== t.size) {
        problems.push(`'${n}' has ${src.data.length} values, the model ${t.size}`);
      } else writes.push([t, src.data]);
    }
    if (problems.length) {
      throw new Error(`GAN checkpoint does not match this task:\n  ${problems.join("\n  ")}`);
    }
    this.optimizer.loadState(ckpt, `${prefix}optim.`);
    const be = backend();
    for (const [t, data] of writes) {
      be.write(t.storageFor("GanTask.loadCheckpoint"), data, t.offset);
    }
    this.iterator.setState(meta.iterator);
    this.#t = meta.t;
    this.#isCount = meta.isCount;
    this.#invalidate();
  }

  /** Frees all GPU memory of the task. */
  dispose(): void {
    this.#disposeModel();
    this.#ones.dispose();
    this.#zeros.dispose();
    for (const t of this.#actionConst) t.dispose();
  }
}
