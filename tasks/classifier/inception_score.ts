/**
 * The inception score (Salimans et al. 2016) with the MNIST / Fashion-MNIST scoring classifiers
 * of tasks/classifier/model.ts as the "inception network":
 *
 *   IS = exp(E_x KL(p(y|x) || p(y))),   p(y) = E_x p(y|x),
 *
 * with the standard protocol: the samples are cut into `splits` consecutive parts, the score is
 * computed within each part, and the mean and standard deviation over parts are reported.
 *
 * Streaming on the GPU: since `E_x KL(p(y|x) || p(y)) = E_x[sum_y p log p] - sum_y p(y) log p(y)`,
 * each part needs only the running sums of `p(y|x)` (K values) and of `sum_y p log p` (one value).
 * Every batch adds its rows into those sums on the GPU ({@link InceptionScoreAccumulator}), so any
 * number of samples streams through in batches with a single readback at the end; the last few
 * numbers per part are combined on the host in double precision.
 * @module
 */

import { loadCheckpoint } from "../../nn/checkpoint.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import type { ClassifierDataset } from "./data.ts";
import { classifierFromCheckpoint, type ScoringCnn, weightsUrl } from "./model.ts";

/** Mean and spread of an inception score over the splits. */
export interface InceptionScore {
  /** Mean over splits. */
  mean: number;
  /** Standard deviation over splits (population, as NumPy's `std`; 0 for one split). */
  std: number;
  /** The score of each split. */
  scores: number[];
  /** Samples scored. */
  samples: number;
}

/** Options of {@link InceptionScoreAccumulator}. */
export interface AccumulatorOptions {
  /** Number of consecutive parts (default 5). */
  splits?: number;
}

/**
 * Streams class predictions of `total` samples, batch by batch, into per-split sums on the GPU.
 * Add rows with {@link InceptionScoreAccumulator.addLogits} or
 * {@link InceptionScoreAccumulator.addProbs} (in sample order), then read the score once with
 * {@link InceptionScoreAccumulator.result}. Split `i` holds samples
 * `[floor(i * total / splits), floor((i + 1) * total / splits))`.
 */
export class InceptionScoreAccumulator {
  /** Samples expected. */
  readonly total: number;
  /** Number of parts. */
  readonly splits: number;
  /** Per split: [K + 1] sums (p(y|x) over rows, then sum_y p log p over rows). */
  #sums: Tensor[] = [];
  #classes = 0;
  #seen = 0;

  /** Prepares for `total` samples in `splits` parts. */
  constructor(total: number, { splits = 5 }: AccumulatorOptions = {}) {
    if (!Number.isInteger(splits) || splits < 1) {
      throw new Error(`inception score: splits must be a positive integer, got ${splits}`);
    }
    if (!Number.isInteger(total) || total < splits) {
      throw new Error(
        `inception score: need at least one sample per split, got ${total} samples for ${splits} splits`,
      );
    }
    this.total = total;
    this.splits = splits;
  }

  /** Samples added so far. */
  get seen(): number {
    return this.#seen;
  }

  /** First sample of split `i` (and one past the last of split `i - 1`). */
  #bound(i: number): number {
    return Math.floor((i * this.total) / this.splits);
  }

  /** Adds rows of class logits `[b, K]` (softmax is applied here). */
  addLogits(logits: Tensor): void {
    this.#add(logits, "logits");
  }

  /** Adds rows of class probabilities `[b, K]` (non-negative, summing to 1 per row). */
  addProbs(probs: Tensor): void {
    this.#add(probs, "probs");
  }

  #add(pred: Tensor, kind: "logits" | "probs"): void {
    if (pred.ndim !== 2 || pred.dtype !== "f32") {
      throw new Error(`inception score: expects ${kind} [batch, classes], got ${pred.describe()}`);
    }
    const [b, k] = pred.shape;
    if (this.#classes === 0) {
      this.#classes = k;
      this.#sums = Array.from(
        { length: this.splits },
        () => keep(ops.fill_(ops.empty([k + 1], "f32", "inceptionScore"), 0)),
      );
    } else if (k !== this.#classes) {
      throw new Error(`inception score: got ${k} classes after ${this.#classes}`);
    }
    if (this.#seen + b > this.total) {
      throw new Error(
        `inception score: ${this.#seen + b} samples added, more than the ${this.total} expected`,
      );
    }
    const start = this.#seen;
    noGrad(() =>
      tidy(() => {
        const logp = kind === "logits" ? pred.logSoftmax(-1) : pred.maximum(1e-30).log(); // p log p -> 0 as p -> 0
        const p = kind === "logits" ? logp.exp() : pred;
        const plogp = p.mul(logp).sum(-1, true);
        const rows = p.concat([plogp], 1); // [b, K + 1]
        for (let i = 0; i < this.splits; i++) {
          const lo = Math.max(this.#bound(i), start);
          const hi = Math.min(this.#bound(i + 1), start + b);
          if (lo >= hi) continue;
          const part = lo === start && hi === start + b
            ? rows
            : rows.slice([lo - start, 0], [hi - start, k + 1]);
          ops.accumulate_(this.#sums[i], part.sum(0));
        }
      })
    );
    this.#seen += b;
  }

  /** Reads the sums (one GPU round trip) and returns the score. */
  async result(): Promise<InceptionScore> {
    if (this.#seen !== this.total) {
      throw new Error(
        `inception score: ${this.#seen} of the ${this.total} expected samples were added`,
      );
    }
    const sums = await readMany(this.#sums);
    const k = this.#classes;
    const scores = sums.map((s, i) => {
      const n = this.#bound(i + 1) - this.#bound(i);
      let cross = 0; // sum_y p(y) log p(y)
      for (let y = 0; y < k; y++) {
        const py = s[y] / n;
        if (py > 0) cross += py * Math.log(py);
      }
      return Math.exp(s[k] / n - cross);
    });
    const mean = scores.reduce((a, b) => a + b, 0) / scores.length;
    const std = Math.sqrt(scores.reduce((a, v) => a + (v - mean) ** 2, 0) / scores.length);
    return { mean, std, scores, samples: this.total };
  }

  /** Frees the sums. */
  dispose(): void {
    for (const t of this.#sums) t.dispose();
    this.#sums = [];
  }
}

/** Options of {@link inceptionScoreOf}. */
export interface PredictionScoreOptions extends AccumulatorOptions {
  /** Whether the rows are logits (default) or probabilities. */
  from?: "logits" | "probs";
}

/** The inception score of precomputed predictions `[N, K]` (logits or probabilities). */
export async function inceptionScoreOf(
  pred: Tensor,
  { splits = 5, from = "logits" }: PredictionScoreOptions = {},
): Promise<InceptionScore> {
  if (pred.ndim !== 2) {
    throw new Error(`inceptionScoreOf: expects [samples, classes], got ${pred.describe()}`);
  }
  const acc = new InceptionScoreAccumulator(pred.shape[0], { splits });
  try {
    if (from === "logits") acc.addLogits(pred);
    else acc.addProbs(pred);
    return await acc.result();
  } finally {
    acc.dispose();
  }
}

/** Something that turns images into class logits: a scoring classifier or a plain function. */
export type Scorer = { logits(x: Tensor): Tensor } | ((x: Tensor) => Tensor);

/**
 * A source of images `[b, 1, 28, 28]` in [-1, 1]: a tensor holding all of them, or a sampler
 * called with the batch size wanted and the batch index (a GAN generator). The inception score
 * disposes the batches a sampler returns.
 */
export type ImageSource = Tensor | ((batchSize: number, batchIndex: number) => Tensor);

/** Options of {@link inceptionScore}. */
export interface InceptionScoreOptions extends AccumulatorOptions {
  /** Samples to score (default: all rows of a tensor source; 10,000 for a sampler). */
  samples?: number;
  /** Images per classifier batch (default 500). */
  batchSize?: number;
}

/**
 * The inception score of images from `source` under `scorer` (e.g. from
 * {@link loadScoringClassifier}): batches of `batchSize` images are classified and streamed into
 * an {@link InceptionScoreAccumulator} on the GPU; one readback at the end.
 */
export async function inceptionScore(
  scorer: Scorer,
  source: ImageSource,
  { splits = 5, samples, batchSize = 500 }: InceptionScoreOptions = {},
): Promise<InceptionScore> {
  const logitsOf = typeof scorer === "function" ? scorer : (x: Tensor) => scorer.logits(x);
  const isTensor = typeof source !== "function";
  const available = isTensor ? source.shape[0] : Infinity;
  const n = samples ?? (isTensor ? available : 10_000);
  if (!Number.isInteger(n) || n < 1 || n > available) {
    throw new Error(
      `inceptionScore: samples must be an integer in [1, ${available}], got ${samples}`,
    );
  }
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`inceptionScore: batchSize must be a positive integer, got ${batchSize}`);
  }
  const acc = new InceptionScoreAccumulator(n, { splits });
  try {
    for (let start = 0, index = 0; start < n; start += batchSize, index++) {
      const b = Math.min(batchSize, n - start);
      noGrad(() =>
        tidy(() => {
          let x: Tensor;
          if (isTensor) {
            const s = source.shape;
            x = b === s[0] ? source : source.slice([start, ...s.slice(1).map(() => 0)], [
              start + b,
              ...s.slice(1),
            ]);
          } else {
            x = source(b, index);
            if (x.ndim < 1 || x.shape[0] !== b) {
              throw new Error(
                `inceptionScore: the sampler returned ${x.describe()} for a batch of ${b}`,
              );
            }
          }
          acc.addLogits(logitsOf(x));
        })
      );
    }
    return await acc.result();
  } finally {
    acc.dispose();
  }
}

// ---------------------------------------------------------------- the committed classifiers

/** A loaded scoring classifier. */
export interface ScoringClassifier {
  /** The CNN (eval mode). */
  model: ScoringCnn;
  /** The dataset it was trained on. */
  dataset: ClassifierDataset;
  /** The weights file's metadata (command, accuracy, date, architecture, ...). */
  metadata: Record<string, string>;
  /** Class logits `[N, 10]` of images `[N, 1, 28, 28]` in [-1, 1] (no gradient recorded). */
  logits(x: Tensor): Tensor;
}

/** The command that produces the committed weights of `dataset`. */
export function trainingCommand(dataset: ClassifierDataset): string {
  return `npx -y deno@2.9.6 run -A cli.ts train classifier ${dataset} --preset paper --set export=true`;
}

/**
 * Loads the committed scoring classifier of `dataset` (`weights/<dataset>_classifier.safetensors`,
 * or `path`). A missing file gives an error naming the file and the command that produces it.
 * Needs an initialized GPU backend.
 */
export async function loadScoringClassifier(
  dataset: ClassifierDataset,
  { path }: { path?: string } = {},
): Promise<ScoringClassifier> {
  const file = path ?? weightsUrl(dataset).pathname;
  const exists = await Deno.stat(file).then((s) => s.isFile, () => false);
  if (!exists) {
    throw new Error(
      `scoring classifier weights not found: ${file}\n` +
        `Train and export them (about an hour on a laptop CPU) with:\n  ${
          trainingCommand(dataset)
        }`,
    );
  }
  const ckpt = await loadCheckpoint(file);
  const stored = ckpt.metadata.dataset;
  if (stored !== undefined && stored !== dataset) {
    throw new Error(`${file} holds a '${stored}' classifier, not '${dataset}'`);
  }
  const model = classifierFromCheckpoint(ckpt, file);
  return {
    model,
    dataset,
    metadata: ckpt.metadata,
    logits: (x) => noGrad(() => model.forward(x)),
  };
}
