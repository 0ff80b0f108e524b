/**
 * The NMT task's data streams: the training batch iterator (seeded epochs, length-sorted pools of
 * 16 batches, bucketed padding; its position is checkpointed) and the evaluation sets kept on the
 * GPU with their mean token loss.
 * @module
 */

import { mulberry32 } from "../../nn/host_random.ts";
import { keep, noGrad, type Tensor, tidy } from "../../tensor/tensor.ts";
import type { IdExample } from "./data.ts";
import { disposeBatch, makeBatch, type Seq2Seq, type Seq2SeqBatch } from "./model.ts";

/** A {@link BatchIterator}'s position. */
export interface BatchIteratorState {
  /** Completed epochs. */
  epoch: number;
  /** Whether the current epoch's batches were drawn. */
  filled: boolean;
  /** Batches left in the current epoch. */
  left: number;
}

/**
 * Batches of one task's training set: each epoch a seeded permutation, cut into pools of 16
 * batches, each pool sorted by source length and cut into batches (less padding, fewer LSTM
 * steps), the batches of the epoch shuffled. Every batch is full (the epoch's last `n mod batch`
 * examples of the permutation wait for a later epoch) and padded lengths are rounded up to
 * `bucket`, so only a few tensor shapes occur (kernels are compiled per shape).
 */
export class BatchIterator {
  readonly #data: readonly IdExample[];
  readonly #batch: number;
  readonly #seed: number;
  readonly #bucket: number;
  #epoch = 0;
  #filled = false;
  #queue: number[][] = [];

  /** Iterates over `data` in batches of `batch` from `seed`, lengths rounded up to `bucket`. */
  constructor(data: readonly IdExample[], batch: number, seed: number, bucket = 1) {
    if (!data.length) throw new Error("BatchIterator: the training set is empty");
    this.#data = data;
    this.#batch = Math.min(batch, data.length);
    this.#seed = seed >>> 0;
    this.#bucket = bucket;
  }

  /** Completed epochs. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Batches per epoch. */
  get batchesPerEpoch(): number {
    return Math.floor(this.#data.length / this.#batch);
  }

  #refill(): void {
    const n = this.#data.length;
    const r = mulberry32((this.#seed ^ Math.imul(this.#epoch + 1, 0x9e3779b1)) >>> 0);
    const perm = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [perm[i], perm[j]] = [perm[j], perm[i]];
    }
    const usable = perm.slice(0, n - (n % this.#batch));
    const pool = this.#batch * 16;
    const batches: number[][] = [];
    for (let p = 0; p < usable.length; p += pool) {
      const chunk = usable.slice(p, p + pool).sort((a, b) =>
        this.#data[a].src.length - this.#data[b].src.length || a - b
      );
      for (let b = 0; b < chunk.length; b += this.#batch) {
        batches.push(chunk.slice(b, b + this.#batch));
      }
    }
    for (let i = batches.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [batches[i], batches[j]] = [batches[j], batches[i]];
    }
    this.#queue = batches;
  }

  /** The position, for a checkpoint: the epoch, whether it was drawn, its batches left. */
  state(): BatchIteratorState {
    return { epoch: this.#epoch, filled: this.#filled, left: this.#queue.length };
  }

  /** Continues from a {@link BatchIterator.state} of an iterator over the same data and seed. */
  setState(s: BatchIteratorState): void {
    this.#epoch = s.epoch;
    this.#filled = s.filled;
    this.#queue = [];
    if (s.filled) {
      this.#refill();
      if (s.left > this.#queue.length) {
        throw new Error(`nmt: a checkpoint's data position (${s.left} batches left) does not fit`);
      }
      this.#queue = this.#queue.slice(this.#queue.length - s.left);
    }
  }

  /** The next batch's examples (a new epoch starts when the queue runs out). */
  nextExamples(): IdExample[] {
    if (!this.#queue.length) {
      if (this.#filled) this.#epoch++;
      this.#filled = true;
      this.#refill();
    }
    return this.#queue.shift()!.map((i) => this.#data[i]);
  }

  /** The next batch, uploaded. */
  next(): Seq2SeqBatch {
    const ex = this.nextExamples();
    return makeBatch(ex.map((e) => e.src), ex.map((e) => e.tgt), { bucket: this.#bucket });
  }
}

/** Evaluation batches (kept on the GPU) of a list of examples, sorted by length. */
export interface EvalSet {
  /** The batches. */
  batches: Seq2SeqBatch[];
  /** Target tokens in all (with EOS): the divisor of the summed loss. */
  tokens: number;
}

/**
 * Builds an {@link EvalSet}: examples sorted by source length, cut into batches of `size`, padded
 * lengths rounded up to `bucket`.
 */
export function makeEvalSet(examples: readonly IdExample[], size: number, bucket = 1): EvalSet {
  const order = examples.map((e, i) => [e, i] as const).sort((a, b) =>
    a[0].src.length - b[0].src.length || a[1] - b[1]
  ).map(([e]) => e);
  const batches: Seq2SeqBatch[] = [];
  let tokens = 0;
  for (let i = 0; i < order.length; i += size) {
    const part = order.slice(i, i + size);
    const b = makeBatch(part.map((e) => e.src), part.map((e) => e.tgt), { bucket });
    for (const t of [b.src, b.tgtIn, b.tgtOut]) keep(t);
    tokens += b.tokens;
    batches.push(b);
  }
  return { batches, tokens };
}

/** Frees an eval set's batches. */
export function disposeEvalSet(set: EvalSet): void {
  for (const b of set.batches) disposeBatch(b);
}

/**
 * Mean token cross-entropy of `task` over an eval set, as a GPU scalar [1] (eval mode, no
 * autograd, no readback). The model's mode is restored afterwards.
 */
export function evalLoss(model: Seq2Seq, task: string, set: EvalSet): Tensor {
  const wasTraining = model.training;
  model.eval();
  try {
    return noGrad(() =>
      tidy(() => {
        let sum: Tensor | null = null;
        for (const b of set.batches) {
          const s = model.lossSum(task, b);
          sum = sum ? sum.add(s) : s;
        }
        return sum!.mul(1 / Math.max(set.tokens, 1));
      })
    );
  } finally {
    model.train(wasTraining);
  }
}
