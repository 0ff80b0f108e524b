/**
 * Luong attention with the "general" score (Luong et al. 2015, eq. 8): `score(h_t, h_s) =
 * h_t^T W h_s`, a softmax over source positions (padded positions masked out), and the context
 * `c_t = sum_s a_ts h_s`. Optionally the attentional hidden state `tanh(W_c [c_t; h_t])` (eq. 5).
 * All decoder steps are scored at once: queries `[B, Tq, Hq]` against memory `[B, Ts, Hs]`.
 * @module
 */

import type { Generator } from "../gpu/random.ts";
import * as ops from "../tensor/ops.ts";
import { rand, softmax, tensor } from "../tensor/functional.ts";
import { isGradEnabled, type Tensor, tidy } from "../tensor/tensor.ts";
import { Module } from "./module.ts";

/** The result of {@link luongAttention} and {@link LuongAttention.forward}. */
export type AttentionOutput = {
  /** Context vectors `[B, Tq, Hs]` (`[B, Hs]` for a 2-D query). */
  context: Tensor;
  /** Attention weights `[B, Tq, Ts]` (`[B, Ts]` for a 2-D query); rows sum to 1. */
  weights: Tensor;
  /** `tanh(W_c [context; query])` `[B, Tq, outputSize]`, when a combine weight was given. */
  output?: Tensor;
};

/** Options of {@link luongAttention}. */
export interface AttentionRunOptions {
  /** Valid source length per batch row (host values, 1..Ts); positions beyond are masked. */
  lengths?: ArrayLike<number>;
  /** Combine weight `[outputSize, Hs + Hq]` for the attentional hidden state. */
  combine?: Tensor;
}

/** Large negative score given to padded source positions (exp underflows to exactly 0). */
const MASKED_SCORE = -1e9;

/**
 * An additive mask `[B, 1, Ts]`: 0 at valid source positions, a large negative number at padded
 * ones (one upload).
 */
export function sourceMask(lengths: ArrayLike<number>, sourceLength: number): Tensor {
  const b = lengths.length;
  const data = new Float32Array(b * sourceLength);
  for (let r = 0; r < b; r++) {
    const len = lengths[r];
    if (!Number.isInteger(len) || len < 1 || len > sourceLength) {
      throw new Error(
        `attention: source lengths must be integers in 1..${sourceLength}, got ${len} (row ${r})`,
      );
    }
    data.fill(MASKED_SCORE, r * sourceLength + len, (r + 1) * sourceLength);
  }
  return tensor(data, [b, 1, sourceLength]);
}

/**
 * Luong "general" attention as a function of its weights.
 * @param query decoder states `[B, Tq, Hq]` (or `[B, Hq]` for one step).
 * @param memory encoder outputs `[B, Ts, Hs]`.
 * @param weight score matrix `W` `[Hq, Hs]`.
 * @returns context, attention weights, and the attentional state when `combine` is given.
 */
export function luongAttention(
  query: Tensor,
  memory: Tensor,
  weight: Tensor,
  options: AttentionRunOptions = {},
): AttentionOutput {
  const { lengths, combine } = options;
  const oneStep = query.ndim === 2;
  if (memory.ndim !== 3 || (query.ndim !== 3 && !oneStep)) {
    throw new Error(
      `attention: expected query [B, Tq, Hq] or [B, Hq] and memory [B, Ts, Hs], got ` +
        `${query.describe()} and ${memory.describe()}`,
    );
  }
  const [b, ts, hs] = memory.shape;
  const hq = query.shape[query.ndim - 1];
  if (query.shape[0] !== b) {
    throw new Error(
      `attention: query ${query.describe()} and memory ${memory.describe()} differ in batch`,
    );
  }
  if (weight.ndim !== 2 || weight.shape[0] !== hq || weight.shape[1] !== hs) {
    throw new Error(`attention: score weight must be [${hq}, ${hs}], got ${weight.describe()}`);
  }
  if (combine && (combine.ndim !== 2 || combine.shape[1] !== hs + hq)) {
    throw new Error(
      `attention: combine weight must be [outputSize, ${hs + hq}], got ${combine.describe()}`,
    );
  }
  if (lengths && lengths.length !== b) {
    throw new Error(`attention: ${lengths.length} source lengths for a batch of ${b}`);
  }
  const run = (): AttentionOutput => {
    const q = oneStep ? ops.reshape(query, [b, 1, hq]) : query;
    // scores[b, t, s] = q[b, t] . (W m[b, s]) = ((q W) m^T)[b, t, s]
    let scores = ops.matmul(ops.matmul(q, weight), memory, false, true);
    if (lengths) scores = ops.binary("add", scores, sourceMask(lengths, ts));
    const weights = softmax(scores, -1);
    const context = ops.matmul(weights, memory);
    let output: Tensor | undefined;
    if (combine) {
      const both = ops.concat([context, q], 2);
      output = ops.unary("tanh", ops.matmul(both, combine, false, true));
    }
    if (!oneStep) return output ? { context, weights, output } : { context, weights };
    const flat = (t: Tensor) => ops.reshape(t, [b, t.shape[2]]);
    return output
      ? { context: flat(context), weights: flat(weights), output: flat(output) }
      : { context: flat(context), weights: flat(weights) };
  };
  return isGradEnabled() ? run() : tidy(run);
}

/** Options of {@link LuongAttention}. */
export interface LuongAttentionOptions {
  /** Also compute the attentional state `tanh(W_c [c; h])` with this many units. */
  outputSize?: number;
  /** Random generator for the init (the default generator when omitted). */
  gen?: Generator;
}

/** Options of {@link LuongAttention.forward}. */
export interface AttentionForwardOptions {
  /** Valid source length per batch row (host values); positions beyond are masked. */
  lengths?: ArrayLike<number>;
}

/**
 * Luong attention (general score) as a module. Parameters: `weight` `[Hq, Hs]` and, with
 * `outputSize`, `combine` `[outputSize, Hs + Hq]` (no bias, as in Luong et al. and TF's
 * `AttentionWrapper`), initialized U(-1/sqrt(fanIn), 1/sqrt(fanIn)).
 */
export class LuongAttention extends Module {
  /** Query (decoder state) size Hq. */
  readonly querySize: number;
  /** Memory (encoder output) size Hs. */
  readonly memorySize: number;
  /** Score matrix `W` `[Hq, Hs]`. */
  readonly weight: Tensor;
  /** Combine weight `W_c` `[outputSize, Hs + Hq]`, or null. */
  readonly combine: Tensor | null;

  /** Creates the attention for queries of `querySize` and memory of `memorySize` features. */
  constructor(querySize: number, memorySize: number, options: LuongAttentionOptions = {}) {
    super();
    this.querySize = querySize;
    this.memorySize = memorySize;
    const k = 1 / Math.sqrt(memorySize);
    this.weight = this.param("weight", rand([querySize, memorySize], -k, k, options.gen));
    const out = options.outputSize;
    if (out !== undefined) {
      const kc = 1 / Math.sqrt(memorySize + querySize);
      this.combine = this.param(
        "combine",
        rand([out, memorySize + querySize], -kc, kc, options.gen),
      );
    } else {
      this.combine = null;
    }
  }

  /**
   * Attends from `query` `[B, Tq, Hq]` (or `[B, Hq]`) over `memory` `[B, Ts, Hs]`.
   * @returns context `[B, Tq, Hs]`, weights `[B, Tq, Ts]`, and `output` with `outputSize`.
   */
  forward(query: Tensor, memory: Tensor, options: AttentionForwardOptions = {}): AttentionOutput {
    return luongAttention(query, memory, this.weight, {
      lengths: options.lengths,
      combine: this.combine ?? undefined,
    });
  }
}
