/**
 * A seeded, shuffling mini-batch iterator over a host dataset. The order of epoch `e` is a pure
 * function of `(seed, e)`, so the iterator's whole state is three integers `(seed, epoch,
 * position)`: save them with a checkpoint and a restored iterator continues exactly where the
 * saved one stopped. Each batch is gathered on the host and uploaded in one write per tensor.
 * @module
 */

import { hash32, mulberry32 } from "../host_random.ts";
import { tensor } from "../../tensor/functional.ts";
import type { Tensor } from "../../tensor/tensor.ts";

/** A labelled dataset on the host: `n` samples of equal size, one label each. */
export interface HostDataset {
  /** Sample values, `n * sampleSize` of them, sample-major. */
  images: Float32Array;
  /** One label per sample. */
  labels: Int32Array;
  /** Number of samples. */
  n: number;
  /** Image height, used for the default sample shape `[1, h, w]`. */
  h?: number;
  /** Image width, used for the default sample shape `[1, h, w]`. */
  w?: number;
}

/** The resumable state of a {@link BatchIterator} (plain JSON). */
export interface BatchIteratorState {
  /** The shuffling seed. */
  seed: number;
  /** Epochs completed so far. */
  epoch: number;
  /** Position of the next sample within the current epoch's order. */
  position: number;
}

/** Options of {@link BatchIterator}. */
export interface BatchIteratorOptions {
  /** Samples per batch. */
  batchSize: number;
  /** Shuffling seed (default 0). */
  seed?: number;
  /** Shuffle each epoch (default true); false keeps the dataset order. */
  shuffle?: boolean;
  /**
   * Drop the last incomplete batch of an epoch (default true: every batch has `batchSize`
   * samples, so shapes and kernels stay fixed). With false the last batch is smaller.
   */
  dropLast?: boolean;
  /** Shape of one sample in `x` (default `[1, h, w]`, or `[sampleSize]` without h and w). */
  sampleShape?: readonly number[];
}

/** One mini-batch on the GPU. */
export interface Batch {
  /** Inputs, `[B, ...sampleShape]` f32 (e.g. `[B, 1, 28, 28]`). */
  x: Tensor;
  /** Labels, `[B]` i32. */
  y: Tensor;
  /** The dataset indices of the batch, in order (host). */
  indices: Int32Array;
  /** The epoch the batch belongs to. */
  epoch: number;
}

/**
 * The sample order of `epoch` for `seed`: a Fisher-Yates shuffle of `0..n-1` driven by a PRNG
 * seeded from `(seed, epoch)`. Deterministic and independent of any other state.
 */
export function epochPermutation(n: number, seed: number, epoch: number): Int32Array {
  const perm = Int32Array.from({ length: n }, (_, i) => i);
  const next = mulberry32(hash32(hash32(seed >>> 0) ^ Math.imul(epoch + 1, 0x9e3779b9)));
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}

/**
 * Iterates over a {@link HostDataset} in shuffled mini-batches, epoch after epoch (it never
 * ends; count steps or watch `Batch.epoch`). The caller owns and disposes each batch's tensors.
 *
 * ```ts
 * const it = new BatchIterator(await loadMnist("train", { range: [-1, 1] }), { batchSize: 64, seed: 1 });
 * const { x, y } = it.next(); // x [64, 1, 28, 28], y [64] i32
 * const saved = it.state();   // later: it.setState(saved)
 * ```
 */
export class BatchIterator {
  /** Samples per batch. */
  readonly batchSize: number;
  /** Whether each epoch is shuffled. */
  readonly shuffle: boolean;
  /** Whether the last incomplete batch of an epoch is dropped. */
  readonly dropLast: boolean;
  /** Shape of one sample in `x`. */
  readonly sampleShape: readonly number[];
  #data: HostDataset;
  #sampleSize: number;
  #seed: number;
  #epoch = 0;
  #position = 0;
  #order: Int32Array | null = null;

  /** Creates an iterator at epoch 0, position 0. */
  constructor(data: HostDataset, options: BatchIteratorOptions) {
    const { batchSize, seed = 0, shuffle = true, dropLast = true } = options;
    if (!Number.isInteger(data.n) || data.n <= 0) {
      throw new Error(
        `BatchIterator: the dataset must hold at least one sample, got n = ${data.n}`,
      );
    }
    if (data.images.length % data.n !== 0) {
      throw new Error(
        `BatchIterator: ${data.images.length} values do not split into ${data.n} equal samples`,
      );
    }
    if (data.labels.length !== data.n) {
      throw new Error(`BatchIterator: ${data.labels.length} labels for ${data.n} samples`);
    }
    if (!Number.isInteger(batchSize) || batchSize <= 0) {
      throw new Error(`BatchIterator: batchSize must be a positive integer, got ${batchSize}`);
    }
    if (dropLast && batchSize > data.n) {
      throw new Error(
        `BatchIterator: batchSize ${batchSize} exceeds the ${data.n} samples and dropLast is set`,
      );
    }
    this.#data = data;
    this.#sampleSize = data.images.length / data.n;
    this.batchSize = batchSize;
    this.shuffle = shuffle;
    this.dropLast = dropLast;
    this.#seed = seed >>> 0;
    this.sampleShape = options.sampleShape ??
      (data.h && data.w && data.h * data.w === this.#sampleSize
        ? [1, data.h, data.w]
        : [this.#sampleSize]);
    const shapeSize = this.sampleShape.reduce((a, b) => a * b, 1);
    if (shapeSize !== this.#sampleSize) {
      throw new Error(
        `BatchIterator: sampleShape [${this.sampleShape.join(", ")}] holds ${shapeSize} values, ` +
          `a sample has ${this.#sampleSize}`,
      );
    }
  }

  /** Number of samples in the dataset. */
  get n(): number {
    return this.#data.n;
  }

  /** Epochs completed so far. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Position of the next sample within the current epoch. */
  get position(): number {
    return this.#position;
  }

  /** Batches per epoch. */
  get batchesPerEpoch(): number {
    return this.dropLast ? Math.floor(this.n / this.batchSize) : Math.ceil(this.n / this.batchSize);
  }

  /** The state to save with a checkpoint. */
  state(): BatchIteratorState {
    return { seed: this.#seed, epoch: this.#epoch, position: this.#position };
  }

  /**
   * Restores a state from {@link BatchIterator.state} (the seed included), checking it against
   * the dataset size.
   */
  setState(s: BatchIteratorState): void {
    const int = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0;
    if (!int(s?.seed) || !int(s?.epoch) || !int(s?.position) || s.position > this.n) {
      throw new Error(
        `BatchIterator.setState: invalid state ${JSON.stringify(s)} (seed, epoch and position ` +
          `must be integers >= 0, position <= ${this.n})`,
      );
    }
    this.#seed = s.seed >>> 0;
    this.#epoch = s.epoch;
    this.#position = s.position;
    this.#order = null;
  }

  /** The sample order of the current epoch. */
  #currentOrder(): Int32Array {
    this.#order ??= this.shuffle
      ? epochPermutation(this.n, this.#seed, this.#epoch)
      : Int32Array.from({ length: this.n }, (_, i) => i);
    return this.#order;
  }

  /**
   * Advances and returns the dataset indices of the next batch (host only, no GPU work), moving
   * to the next epoch, reshuffled, when the current one is used up.
   */
  nextIndices(): { indices: Int32Array; epoch: number } {
    const left = this.n - this.#position;
    if (left === 0 || (this.dropLast && left < this.batchSize)) {
      this.#epoch++;
      this.#position = 0;
      this.#order = null;
    }
    const order = this.#currentOrder();
    const size = Math.min(this.batchSize, this.n - this.#position);
    const indices = order.slice(this.#position, this.#position + size);
    this.#position += size;
    return { indices, epoch: this.#epoch };
  }

  /** Gathers the given samples on the host: `x` values and labels, sample-major. */
  gather(indices: Int32Array): { x: Float32Array; y: Int32Array } {
    const s = this.#sampleSize;
    const x = new Float32Array(indices.length * s);
    const y = new Int32Array(indices.length);
    const { images, labels } = this.#data;
    for (let b = 0; b < indices.length; b++) {
      const i = indices[b];
      x.set(images.subarray(i * s, (i + 1) * s), b * s);
      y[b] = labels[i];
    }
    return { x, y };
  }

  /** The next batch, uploaded as `x` [B, ...sampleShape] and `y` [B] i32 (one write each). */
  next(): Batch {
    const { indices, epoch } = this.nextIndices();
    const { x, y } = this.gather(indices);
    return {
      x: tensor(x, [indices.length, ...this.sampleShape]),
      y: tensor(y, [indices.length], "i32"),
      indices,
      epoch,
    };
  }
}
