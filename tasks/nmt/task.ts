/**
 * Multi-task translation as a {@link ScheduleTask} (paper section 4.3): three actions, each one
 * update of a task's loss on the shared encoder plus that task's decoder,
 *
 * | action | loss | parameters |
 * |---|---|---|
 * | MT | English -> German cross-entropy | encoder + decoder_mt |
 * | POS | UPOS tagging cross-entropy | encoder + decoder_pos |
 * | NER | BIO entity tagging cross-entropy | encoder + decoder_ner |
 *
 * Each task has its own Adam (the authors' code gives every task its own optimizer, so the shared
 * encoder carries three sets of moments) with per-group step counters; gradients are clipped to
 * a global norm (paper: 1). Features are the paper's generic set (rl/features.ts
 * `FeatureHistory`): progress t/T, per-task normalized gradient norm and training loss (lazy:
 * updated when the task is trained), the MT validation loss with its EMA and the EMAs of its first
 * and second differences, plus the POS and NER validation losses as extras. Validation runs every
 * `valEvery` training batches entirely on the GPU (summed token losses over pre-built batches,
 * divided by the known token counts), so stepping never reads anything back.
 *
 * Population 1. {@link NmtTask.step} takes host actions (`Int32Array`: only the chosen task's
 * update is recorded) or an i32 GPU action tensor: then the three updates are recorded, each in a
 * gated region on `action == k` (tensor/gated.ts), so only the chosen decoder (and the encoder
 * under it) computes and the step needs no host sync. Both ways give the same results: at every
 * step each task's data stream advances by one batch and the chosen task trains on its batch (a
 * host action uploads only that batch).
 *
 * Besides the schedule actions, {@link NmtTask.jointStep} trains all three losses at once with
 * weights (uncertainty weighting, dynamic weight average); it consumes three batches.
 * @module
 */

import { FeatureHistory, normalizedGradNorm } from "../../rl/features.ts";
import type { Action, ScheduleTask } from "../../rl/task.ts";
import {
  type Checkpoint,
  checkpointJson,
  type CheckpointPart,
  checkpointTensor,
  mergeParts,
} from "../../nn/checkpoint.ts";
import { FlatParams } from "../../nn/module.ts";
import { Adam, clipGradNorm } from "../../nn/optim.ts";
import { compare, tensor } from "../../tensor/functional.ts";
import { whenGpu } from "../../tensor/gated.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidy } from "../../tensor/tensor.ts";
import type { EncodedCorpus, IdExample } from "./data.ts";
import { disposeBatch, Seq2Seq, type Seq2SeqBatch, type Seq2SeqSizes } from "./model.ts";
import {
  BatchIterator,
  type BatchIteratorState,
  disposeEvalSet,
  evalLoss,
  type EvalSet,
  makeEvalSet,
} from "./batches.ts";

/** The task names, in action order. */
export const NMT_TASKS = ["mt", "pos", "ner"] as const;

/** A task name. */
export type NmtTaskName = typeof NMT_TASKS[number];

/** The three actions: train MT, POS or NER (encoder + that decoder). */
export const NMT_ACTIONS: readonly Action[] = [
  { name: "MT", loss: "mt", group: "encoder+decoder_mt" },
  { name: "POS", loss: "pos", group: "encoder+decoder_pos" },
  { name: "NER", loss: "ner", group: "encoder+decoder_ner" },
];

/** The extra features after the paper's generic set. */
export const NMT_EXTRA_FEATURES: readonly string[] = ["val.pos", "val.ner"];

/** Model sizes without the vocabularies (those come from the data). */
export type NmtModelSizes = Omit<Seq2SeqSizes, "srcVocab" | "decoders">;

/** Options of {@link NmtTask}. */
export interface NmtTaskOptions {
  /** The encoded corpus. */
  data: EncodedCorpus;
  /** Model sizes. */
  model: NmtModelSizes;
  /** Training batch size. */
  batch: number;
  /** Adam learning rate. */
  lr: number;
  /** Global gradient-norm clip. */
  clip: number;
  /** Validate every this many training batches. */
  valEvery: number;
  /** Validation batch size (forward only). */
  evalBatch: number;
  /** T for the progress feature: the run's planned training batches. */
  totalBatches: number;
  /** Use at most this many validation examples of POS and NER (0 = all). */
  auxValLimit?: number;
  /** Padded lengths are rounded up to a multiple of this (fewer shapes, fewer compilations). */
  bucket?: number;
}

/** What {@link NmtTask.checkpointState} saves as JSON. */
interface NmtTaskMeta {
  seed: number;
  t: number;
  batches: number;
  validations: number;
  iterators: BatchIteratorState[];
  trainLoss: boolean[];
  joint: boolean;
}

/** Replaces a kept tensor by a kept copy of `next` (a fresh buffer, never aliased). */
function swapCopy(old: Tensor | null, next: Tensor): Tensor {
  const copy = keep(noGrad(() => ops.assign_(ops.empty(next.shape, next.dtype), next)));
  old?.dispose();
  return copy;
}

/** The multi-task translation task (see the module doc). */
export class NmtTask implements ScheduleTask {
  /** Registry name. */
  readonly name = "nmt";
  /** MT, POS, NER. */
  readonly actions: readonly Action[] = NMT_ACTIONS;
  /** One model. */
  readonly population = 1;
  /** The paper's generic features plus `val.pos`, `val.ner`. */
  readonly featureNames: readonly string[];
  /** The options. */
  readonly opts: NmtTaskOptions;
  #model: Seq2Seq | null = null;
  #flat: FlatParams | null = null;
  #opts: Adam[] = [];
  #joint: Adam | null = null;
  #history: FeatureHistory;
  #iters: BatchIterator[] = [];
  readonly #val: Record<NmtTaskName, EvalSet>;
  #t = 0;
  #batches = 0;
  #validations = 0;
  #dims: number[] = [];
  #valLoss: Record<NmtTaskName, Tensor | null> = { mt: null, pos: null, ner: null };
  #trainLoss: (Tensor | null)[] = [null, null, null];
  #best: Tensor | null = null;
  #actionIds: Tensor[] = [];
  #genSeed = 0;
  #seed = 0;

  /** Builds the task; call {@link NmtTask.reset} before stepping. */
  constructor(opts: NmtTaskOptions) {
    this.opts = opts;
    this.#history = new FeatureHistory({
      population: 1,
      losses: [...NMT_TASKS],
      actionLoss: [0, 1, 2],
      totalSteps: opts.totalBatches,
      valEvery: opts.valEvery,
      extras: NMT_EXTRA_FEATURES,
    });
    this.featureNames = this.#history.names;
    const lim = (xs: IdExample[]) => (opts.auxValLimit ? xs.slice(0, opts.auxValLimit) : xs);
    this.#val = {
      mt: makeEvalSet(opts.data.data.mt.valid, opts.evalBatch, opts.bucket),
      pos: makeEvalSet(lim(opts.data.data.pos.valid), opts.evalBatch, opts.bucket),
      ner: makeEvalSet(lim(opts.data.data.ner.valid), opts.evalBatch, opts.bucket),
    };
    this.#actionIds = [0, 1, 2].map((a) => keep(tensor(Int32Array.of(a), [1], "i32")));
  }

  /** The model (after `reset`). */
  get model(): Seq2Seq {
    if (!this.#model) throw new Error("nmt: call reset(seed) first");
    return this.#model;
  }

  /** The flat parameters (after `reset`). */
  get flat(): FlatParams {
    if (!this.#flat) throw new Error("nmt: call reset(seed) first");
    return this.#flat;
  }

  /** Schedule steps taken since the reset. */
  get t(): number {
    return this.#t;
  }

  /** Training batches consumed since the reset (a joint step consumes three). */
  get batches(): number {
    return this.#batches;
  }

  /** Validations run since the reset (the reset itself runs one). */
  get validations(): number {
    return this.#validations;
  }

  /** MT training batches per epoch (the x-axis unit of the curves). */
  get mtBatchesPerEpoch(): number {
    const n = this.opts.data.data.mt.train.length;
    return Math.max(1, Math.floor(n / Math.min(this.opts.batch, n)));
  }

  /** Training-set sizes (examples) per task, in action order. */
  get trainSizes(): number[] {
    return NMT_TASKS.map((k) => this.opts.data.data[k].train.length);
  }

  /** Re-initializes model, optimizers, data order and history from `seed`, then validates once. */
  reset(seed: number): void {
    this.#freeModel();
    this.#seed = seed;
    const o = this.opts;
    const d = o.data;
    this.#model = new Seq2Seq({
      ...o.model,
      srcVocab: d.srcVocab.size,
      decoders: { mt: d.tgtVocab.mt.size, pos: d.tgtVocab.pos.size, ner: d.tgtVocab.ner.size },
    }, seed);
    this.#genSeed = this.#model.gen.state().seed;
    this.#flat = new FlatParams(this.#model.namedParameters(), this.#model.paramGroups());
    const size = (g: string) => {
      const r = this.#flat!.group(g);
      return r.end - r.start;
    };
    this.#dims = NMT_TASKS.map((k) => size("encoder") + size(`decoder_${k}`));
    this.#opts = NMT_TASKS.map(() =>
      new Adam(this.#flat!, { lr: o.lr, stateSharing: "per-group" })
    );
    this.#iters = NMT_TASKS.map((k, i) =>
      new BatchIterator(d.data[k].train, o.batch, (seed * 31 + i + 1) >>> 0, o.bucket)
    );
    this.#history.reset();
    this.#t = 0;
    this.#batches = 0;
    this.#validations = 0;
    this.#trainLoss = this.#trainLoss.map((t) => {
      t?.dispose();
      return null;
    });
    this.#model.train();
    this.validate();
  }

  /** The per-task Adam optimizers (each steps `encoder` and its own decoder). */
  get optimizers(): readonly Adam[] {
    return this.#opts;
  }

  /**
   * One schedule step: action `actions[0]` (host, or an i32 [1] GPU tensor: see the module doc)
   * trains that task on its next batch (zero grads, loss, backward, clip, that task's Adam on
   * `encoder` and `decoder_<task>`), records the loss and normalized gradient norm in the feature
   * history, and validates when due. Never reads anything back.
   */
  step(actions: Tensor | Int32Array): void {
    const flat = this.flat;
    const model = this.model;
    const seed = this.#genSeed;
    const train = (k: number, batch: Seq2SeqBatch) => {
      const task = NMT_TASKS[k];
      // Dropout masks from a stream of (step, task): the same whichever way the step is taken.
      const stream = (seed ^ Math.imul(3 * this.#t + k + 1, 0x9e3779b1)) >>> 0;
      model.gen.setState({ seed: stream, counter: 0 });
      flat.zeroGrad();
      const loss = model.loss(task, batch);
      loss.backward();
      const norm = clipGradNorm(flat, this.opts.clip);
      this.#opts[k].step("encoder");
      this.#opts[k].step(`decoder_${task}`);
      return { l: loss.detach().reshape([1]), g: normalizedGradNorm(norm, this.#dims[k]) };
    };
    if (actions instanceof Int32Array) {
      const a = actions[0];
      if (actions.length !== 1 || !(a >= 0 && a < 3)) {
        throw new Error(`nmt: expected one action 0 (MT), 1 (POS) or 2 (NER), got [${actions}]`);
      }
      // Every stream advances by one batch; only the chosen one is uploaded.
      this.#iters.forEach((it, k) => k !== a && it.nextExamples());
      const batch = this.#iters[a].next();
      tidy(() => {
        const { l, g } = train(a, batch);
        this.#history.recordStep(this.#actionIds[a], l, g);
        this.#trainLoss[a] = swapCopy(this.#trainLoss[a], l);
      });
      disposeBatch(batch);
    } else {
      if (actions.size !== 1 || actions.dtype === "f32") {
        throw new Error(`nmt: step() takes one i32 action (0, 1 or 2), got ${actions.describe()}`);
      }
      const batches = this.#iters.map((it) => it.next());
      tidy(() => {
        const a = actions.reshape([1]);
        const af = ops.cast(a, "f32");
        const on = NMT_TASKS.map((_, k) => compare("eq", af, k));
        const out = on.map((flag, k) => whenGpu(flag, () => train(k, batches[k])));
        const pick = (x: (r: { l: Tensor; g: Tensor }) => Tensor) =>
          ops.where(on[0], x(out[0]), ops.where(on[1], x(out[1]), x(out[2])));
        this.#history.recordStep(a, pick((r) => r.l), pick((r) => r.g));
        out.forEach((r, k) => {
          const old = this.#trainLoss[k] ?? tensor(new Float32Array(1), [1]);
          this.#trainLoss[k] = swapCopy(this.#trainLoss[k], ops.where(on[k], r.l, old));
        });
      });
      for (const b of batches) disposeBatch(b);
    }
    this.#history.advance();
    this.#t++;
    this.#advanceBatches(1);
  }

  /**
   * One joint update on all three tasks (one batch each): `combine` turns the three losses
   * (scalars, in task order) into the loss to minimize; backward, clip, and one Adam step over all
   * parameters (a separate optimizer from the per-task ones). Returns the three detached losses
   * as a kept f32 [3] tensor (the caller disposes it).
   */
  jointStep(combine: (losses: Tensor[]) => Tensor): Tensor {
    const flat = this.flat;
    const model = this.model;
    this.#joint ??= new Adam(flat, { lr: this.opts.lr, stateSharing: "per-group" });
    const batches = this.#iters.map((it) => it.next());
    const losses = tidy(() => {
      flat.zeroGrad();
      const ls = NMT_TASKS.map((k, i) => model.loss(k, batches[i]));
      combine(ls).backward();
      clipGradNorm(flat, this.opts.clip);
      this.#joint!.step("all");
      ls.forEach((l, i) => (this.#trainLoss[i] = swapCopy(this.#trainLoss[i], l.reshape([1]))));
      return ops.concat(ls.map((l) => l.detach().reshape([1])), 0);
    });
    for (const b of batches) disposeBatch(b);
    this.#history.advance();
    this.#t++;
    this.#advanceBatches(3);
    return keep(losses);
  }

  #advanceBatches(n: number): void {
    const before = Math.floor(this.#batches / this.opts.valEvery);
    this.#batches += n;
    if (Math.floor(this.#batches / this.opts.valEvery) > before) this.validate();
  }

  /** Validates all three tasks (GPU only) and feeds the feature history. */
  validate(): void {
    const model = this.model;
    for (const k of NMT_TASKS) {
      const v = evalLoss(model, k, this.#val[k]);
      this.#valLoss[k]?.dispose();
      this.#valLoss[k] = keep(v);
    }
    this.#history.recordValidation(this.#valLoss.mt!);
    const extras = noGrad(() =>
      tidy(() => ops.concat([this.#valLoss.pos!, this.#valLoss.ner!], 0).reshape([1, 2]))
    );
    this.#history.setExtras(extras);
    extras.dispose();
    this.#validations++;
  }

  /** The features [1, K] (owned by the task). */
  features(): Tensor {
    return this.#history.features();
  }

  /**
   * Metrics, each [1] (views; valid until the next step): `val` (MT validation loss per token),
   * `ppl` (its exp), `val.pos`, `val.ner`, and `loss.<task>` (last training loss, 0 before any).
   */
  metrics(): Record<string, Tensor> {
    const view = (t: Tensor | null, name: string) =>
      t ? t.view([1], name) : tensor(new Float32Array(1), [1]);
    return noGrad(() => ({
      val: view(this.#valLoss.mt, "nmt.val"),
      ppl: this.#valLoss.mt!.exp(),
      "val.pos": view(this.#valLoss.pos, "nmt.val.pos"),
      "val.ner": view(this.#valLoss.ner, "nmt.val.ner"),
      "loss.mt": view(this.#trainLoss[0], "nmt.loss.mt"),
      "loss.pos": view(this.#trainLoss[1], "nmt.loss.pos"),
      "loss.ner": view(this.#trainLoss[2], "nmt.loss.ner"),
    }));
  }

  /** Copies the current parameters aside (call when validation improved). */
  saveBest(): void {
    const flat = this.flat;
    this.#best = swapCopy(this.#best, flat.data);
  }

  /** Restores the parameters saved by {@link NmtTask.saveBest} (no-op when none were saved). */
  restoreBest(): void {
    if (this.#best) ops.assign_(this.flat.data, this.#best);
  }

  /** MT test loss per token [1] (GPU), on batches built for the call. */
  testLoss(evalBatch: number): Tensor {
    const set = makeEvalSet(this.opts.data.data.mt.test, evalBatch, this.opts.bucket);
    try {
      return evalLoss(this.model, "mt", set);
    } finally {
      disposeEvalSet(set);
    }
  }

  /**
   * The task's state for a checkpoint, under `prefix`: parameters, the best parameters, the
   * optimizers, the validation and training losses, the feature history, the data positions and
   * the counters (the seed rebuilds the model, whose dropout streams follow the step count).
   */
  checkpointState(prefix = "task."): CheckpointPart {
    const tensors: Record<string, Tensor> = { [`${prefix}params`]: this.flat.data };
    if (this.#best) tensors[`${prefix}best`] = this.#best;
    for (const k of NMT_TASKS) tensors[`${prefix}val.${k}`] = this.#valLoss[k]!;
    this.#trainLoss.forEach((t, i) => t && (tensors[`${prefix}loss.${NMT_TASKS[i]}`] = t));
    const parts = this.#opts.map((o, i) => o.state(`${prefix}optim.${NMT_TASKS[i]}.`));
    if (this.#joint) parts.push(this.#joint.state(`${prefix}optim.joint.`));
    const meta: NmtTaskMeta = {
      seed: this.#seed,
      t: this.#t,
      batches: this.#batches,
      validations: this.#validations,
      iterators: this.#iters.map((it) => it.state()),
      trainLoss: this.#trainLoss.map((t) => t !== null),
      joint: this.#joint !== null,
    };
    return mergeParts(
      { tensors, metadata: { [`${prefix}meta`]: JSON.stringify(meta) } },
      this.#history.checkpointState(`${prefix}features.`),
      ...parts,
    );
  }

  /**
   * Restores a state saved by {@link NmtTask.checkpointState} (the same data and options; every
   * entry's size is checked).
   */
  loadCheckpoint(ckpt: Checkpoint, prefix = "task."): void {
    const meta = checkpointJson<NmtTaskMeta>(ckpt, `${prefix}meta`);
    this.reset(meta.seed);
    const flat = this.flat;
    const load = (name: string, shape: number[]) =>
      keep(checkpointTensor(ckpt, prefix + name, shape));
    const params = load("params", [flat.size]);
    tidy(() => ops.assign_(flat.data, params));
    params.dispose();
    if (ckpt.tensors.has(`${prefix}best`)) this.#best = load("best", [flat.size]);
    for (const k of NMT_TASKS) {
      this.#valLoss[k]?.dispose();
      this.#valLoss[k] = load(`val.${k}`, [1]);
    }
    this.#trainLoss = meta.trainLoss.map((has, i) =>
      has ? load(`loss.${NMT_TASKS[i]}`, [1]) : null
    );
    this.#opts.forEach((o, i) => o.loadState(ckpt, `${prefix}optim.${NMT_TASKS[i]}.`));
    if (meta.joint) {
      this.#joint = new Adam(flat, { lr: this.opts.lr, stateSharing: "per-group" });
      this.#joint.loadState(ckpt, `${prefix}optim.joint.`);
    }
    this.#history.loadCheckpoint(ckpt, `${prefix}features.`);
    meta.iterators.forEach((s, i) => this.#iters[i].setState(s));
    this.#t = meta.t;
    this.#batches = meta.batches;
    this.#validations = meta.validations;
  }

  #freeModel(): void {
    for (const o of this.#opts) o.dispose();
    this.#opts = [];
    this.#joint?.dispose();
    this.#joint = null;
    this.#flat?.dispose();
    this.#flat = null;
    this.#model = null;
    this.#best?.dispose();
    this.#best = null;
  }

  /** Frees the model, optimizers, validation batches and history. */
  dispose(): void {
    this.#freeModel();
    for (const k of NMT_TASKS) {
      disposeEvalSet(this.#val[k]);
      this.#valLoss[k]?.dispose();
    }
    for (const t of [...this.#trainLoss, ...this.#actionIds]) t?.dispose();
    this.#history.dispose();
  }
}
