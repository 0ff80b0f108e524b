/**
 * LSTM cell and multi-layer (optionally bidirectional) LSTM, composed from tensor ops so that
 * autograd handles the backward pass. Gate order is PyTorch's (i, f, g, o). Each cell holds one
 * fused weight `[4H, F + H]` (PyTorch's `weight_ih` and `weight_hh` side by side) and one bias
 * `[4H]` (PyTorch's `bias_ih + bias_hh`), so the gates of a step are one matmul of `[x, h]`.
 *
 * Over a whole sequence the input half of that matmul does not depend on the recurrence, so
 * {@link lstm} computes it for all time steps at once (one matmul per layer and direction,
 * bias included), and the recurrence runs as one fused scan (tensor/rnn_ops.ts: per step the
 * recurrent matmul and one kernel for the gates and the state update, forward and backward; see
 * {@link LSTM_DISPATCHES_PER_STEP}). {@link lstmCell} and `setLstmScan(false)` keep the
 * composition of tensor ops, the reference the scan is tested against.
 *
 * Padded batches: pass host `lengths`; a sequence's state stops changing after its last step
 * (forward direction) or starts at its last step (reverse direction), and outputs at padded
 * positions are zero, as with PyTorch's packed sequences.
 *
 * Memory: with autograd recording, intermediates belong to the caller's `tidy()` scope (the graph
 * needs them); without it (`noGrad`), the functions here free their own intermediates.
 * @module
 */

import type { Generator } from "../gpu/random.ts";
import * as ops from "../tensor/ops.ts";
import { bernoulli, rand, tensor, zeros } from "../tensor/functional.ts";
import { lstmScan, lstmScanViews } from "../tensor/rnn_ops.ts";
import {
  isGradEnabled,
  noGrad,
  type Tensor,
  type TensorContainer,
  tidy,
} from "../tensor/tensor.ts";
import { Module } from "./module.ts";

/** Hidden and cell state of an LSTM: each `[B, H]` for a cell, `[layers * dirs, B, H]` for a stack. */
export type LSTMState = {
  /** Hidden state. */
  h: Tensor;
  /** Cell state. */
  c: Tensor;
};

/** Weights of one LSTM cell (one layer, one direction). */
export interface LSTMWeights {
  /** Fused weight `[4H, F + H]`: columns `0..F` act on the input, `F..F+H` on `h`. */
  weight: Tensor;
  /** Bias `[4H]`. */
  bias: Tensor;
}

/** The result of {@link lstm} and {@link LSTM.forward}. */
export type LSTMOutput = {
  /** Top-layer outputs `[B, T, H * dirs]` (forward and reverse halves concatenated). */
  output: Tensor;
  /** Final hidden states `[layers * dirs, B, H]` (index `layer * dirs + dir`, as PyTorch). */
  h: Tensor;
  /** Final cell states `[layers * dirs, B, H]`. */
  c: Tensor;
};

/** Options of {@link lstm}. */
export interface LSTMRunOptions {
  /** Two directions per layer (weights alternate forward, reverse). Default false. */
  bidirectional?: boolean;
  /** Initial state, `[layers * dirs, B, H]` each; zeros when omitted. */
  state?: LSTMState;
  /** Valid length of each sequence (host values, 1..T); all T when omitted. */
  lengths?: ArrayLike<number>;
  /** Dropout probability on the outputs of every layer but the last (when `training`). */
  dropout?: number;
  /** Whether dropout is active (default false). */
  training?: boolean;
  /** Add each layer's input to its output, for layers after the first. Default false. */
  residual?: boolean;
  /** Random generator for dropout (the default generator when omitted). */
  gen?: Generator;
}

/**
 * Kernel dispatches per time step and direction in {@link lstm}'s forward pass, padded or not:
 * the recurrent matmul and one fused step kernel (tensor/rnn_ops.ts; the backward pass is two
 * more). The per-step composition (`setLstmScan(false)`) takes 7 with elementwise fusion (12 with
 * padding) and 15 without.
 */
export const LSTM_DISPATCHES_PER_STEP = 2;

let useScan = true;

/**
 * Runs {@link lstm}'s recurrences as the fused scan of tensor/rnn_ops.ts (default, `true`) or
 * as the per-step composition of tensor ops it replaces (`false`: the reference the tests compare
 * with). Returns the previous setting.
 */
export function setLstmScan(on: boolean): boolean {
  const prev = useScan;
  useScan = on;
  return prev;
}

function checkWeights(op: string, w: LSTMWeights, inputSize: number): number {
  const h4 = w.bias.shape[0];
  const hidden = h4 / 4;
  if (
    w.bias.ndim !== 1 || !Number.isInteger(hidden) || w.weight.ndim !== 2 ||
    w.weight.shape[0] !== h4 || w.weight.shape[1] !== inputSize + hidden
  ) {
    throw new Error(
      `${op}: expected weight [4H, ${inputSize} + H] and bias [4H], got ${w.weight.describe()} ` +
        `and ${w.bias.describe()}`,
    );
  }
  return hidden;
}

/**
 * The state update from pre-activation gates `[B, 4H]` (i, f, g, o) and the previous cell state
 * (`null` means zeros, which skips `f * c`).
 */
function stateFromGates(gates: Tensor, c: Tensor | null, hidden: number): LSTMState {
  const b = gates.shape[0];
  const part = (t: Tensor, k: number) => ops.slice(t, [0, k * hidden], [b, (k + 1) * hidden]);
  const sig = ops.unary("sigmoid", gates);
  const i = part(sig, 0);
  const g = ops.unary("tanh", part(gates, 2));
  const o = part(sig, 3);
  const ig = ops.binary("mul", i, g);
  const cNew = c ? ops.binary("add", ops.binary("mul", part(sig, 1), c), ig) : ig;
  return { h: ops.binary("mul", o, ops.unary("tanh", cNew)), c: cNew };
}

/** Runs `fn` in a `tidy` scope when autograd is off (nothing needs the intermediates). */
function tidyUnlessRecording<T extends TensorContainer>(fn: () => T): T {
  return isGradEnabled() ? fn() : tidy(fn);
}

/**
 * One LSTM step: `gates = [x, h] @ weight^T + bias`, then PyTorch's update.
 * @param x input `[B, F]`.
 * @param state previous `{h, c}` (`[B, H]` each); zeros when omitted.
 * @returns the new `{h, c}`.
 */
export function lstmCell(
  x: Tensor,
  state: LSTMState | null | undefined,
  w: LSTMWeights,
): LSTMState {
  if (x.ndim !== 2) throw new Error(`lstmCell: input must be [B, F], got ${x.describe()}`);
  const hidden = checkWeights("lstmCell", w, x.shape[1]);
  if (
    state &&
    (state.h.shape.join() !== `${x.shape[0]},${hidden}` ||
      state.c.shape.join() !== state.h.shape.join())
  ) {
    throw new Error(
      `lstmCell: state must be [${x.shape[0]}, ${hidden}] each, got ${state.h.describe()} and ` +
        state.c.describe(),
    );
  }
  return tidyUnlessRecording(() => {
    const xh = state ? ops.concat([x, state.h], 1) : x;
    // Without a state, h = 0: only the input columns of the weight contribute.
    const wx = state ? w.weight : ops.slice(w.weight, [0, 0], [4 * hidden, x.shape[1]]);
    const gates = ops.binary("add", ops.matmul(xh, wx, false, true), w.bias);
    return stateFromGates(gates, state ? state.c : null, hidden);
  });
}

/** Checks host `lengths` against the batch and sequence length; null when none are given. */
function checkLengths(lengths: ArrayLike<number> | undefined, b: number, t: number) {
  if (!lengths) return null;
  if (lengths.length !== b) {
    throw new Error(`lstm: ${lengths.length} lengths for a batch of ${b}`);
  }
  const lens = Array.from(lengths);
  for (const len of lens) {
    if (!Number.isInteger(len) || len < 1 || len > t) {
      throw new Error(
        `lstm: lengths must be integers in 1..${t} (the sequence length), got ${len}`,
      );
    }
  }
  return lens;
}

/** The scan's mask `[B, T]` (1 = valid step), or undefined when no sequence is padded. */
function scanMask(lengths: ArrayLike<number> | undefined, b: number, t: number) {
  const lens = checkLengths(lengths, b, t);
  if (!lens || lens.every((len) => len === t)) return undefined;
  return tensor(Float32Array.from({ length: b * t }, (_, q) => q % t < lens[(q / t) | 0] ? 1 : 0), [
    b,
    t,
  ]);
}

/** Per-step masks `[B, 1]` (1 = valid) for the steps where some sequence is padded, else null. */
function stepMasks(
  lengths: ArrayLike<number> | undefined,
  b: number,
  t: number,
): (Tensor | null)[] {
  const lens = checkLengths(lengths, b, t);
  if (!lens) return new Array(t).fill(null);
  const min = Math.min(...lens);
  return Array.from(
    { length: t },
    (_, step) =>
      step < min ? null : tensor(Float32Array.from(lens, (len) => (step < len ? 1 : 0)), [b, 1]),
  );
}

/**
 * One direction of one layer over a sequence.
 * @param proj the input projection with bias, `[B, T, 4H]`.
 * @param wh the recurrent half of the weight, `[4H, H]`.
 */
function runDirection(
  proj: Tensor,
  wh: Tensor,
  init: LSTMState | null,
  reverse: boolean,
  masks: (Tensor | null)[],
): { outputs: Tensor[]; state: LSTMState } {
  const [b, steps, h4] = proj.shape;
  const hidden = h4 / 4;
  let h = init?.h ?? null;
  let c = init?.c ?? null;
  const outputs: Tensor[] = new Array(steps);
  for (let k = 0; k < steps; k++) {
    const t = reverse ? steps - 1 - k : k;
    const xg = ops.reshape(ops.slice(proj, [0, t, 0], [b, t + 1, h4]), [b, h4]);
    const gates = h ? ops.binary("add", xg, ops.matmul(h, wh, false, true)) : xg;
    const next = stateFromGates(gates, c, hidden);
    const m = masks[t];
    if (m) {
      outputs[t] = ops.binary("mul", next.h, m);
      h = h ? ops.where(m, next.h, h) : outputs[t];
      c = c ? ops.where(m, next.c, c) : ops.binary("mul", next.c, m);
    } else {
      outputs[t] = next.h;
      h = next.h;
      c = next.c;
    }
  }
  return { outputs, state: { h: h!, c: c! } };
}

/** Stacks per-step outputs `[B, H]` into `[B, T, H]` (one dispatch per step). */
function stackSteps(outputs: Tensor[]): Tensor {
  const [b, hidden] = outputs[0].shape;
  return ops.concat(outputs.map((o) => ops.reshape(o, [b, 1, hidden])), 1);
}

/** Inverted dropout: zeroes each element with probability `p` and scales the rest by 1/(1-p). */
function dropoutOp(x: Tensor, p: number, gen?: Generator): Tensor {
  const mask = bernoulli([...x.shape], 1 - p, gen);
  return ops.scalarOp("mul_scalar", ops.binary("mul", x, mask), 1 / (1 - p));
}

/**
 * A multi-layer LSTM over a batch-first sequence `x` `[B, T, F]`.
 * @param weights one {@link LSTMWeights} per layer and direction, layer-major (forward then
 * reverse within a layer): layer 0 takes F inputs, later layers H * dirs.
 * @returns the top layer's outputs `[B, T, H * dirs]` and the final states `[layers * dirs, B, H]`.
 */
export function lstm(
  x: Tensor,
  weights: readonly LSTMWeights[],
  options: LSTMRunOptions = {},
): LSTMOutput {
  const { bidirectional = false, state, lengths, dropout = 0, training = false, residual = false } =
    options;
  if (x.ndim !== 3) {
    throw new Error(`lstm: input must be batch-first [B, T, F], got ${x.describe()}`);
  }
  const [b, steps, features] = x.shape;
  if (steps < 1) throw new Error(`lstm: the sequence is empty (${x.describe()})`);
  const dirs = bidirectional ? 2 : 1;
  if (weights.length === 0 || weights.length % dirs !== 0) {
    throw new Error(`lstm: ${weights.length} weight sets for ${dirs} direction(s) per layer`);
  }
  if (!(dropout >= 0 && dropout < 1)) {
    throw new Error(`lstm: dropout must be in [0, 1), got ${dropout}`);
  }
  const layers = weights.length / dirs;
  const hidden = checkWeights("lstm (layer 0)", weights[0], features);
  weights.forEach((w, k) => {
    if (k >= dirs) checkWeights(`lstm (layer ${Math.floor(k / dirs)})`, w, hidden * dirs);
  });
  const stateShape = `${layers * dirs},${b},${hidden}`;
  if (state && (state.h.shape.join() !== stateShape || state.c.shape.join() !== stateShape)) {
    throw new Error(
      `lstm: initial state must be [${stateShape.replaceAll(",", ", ")}] each, got ` +
        `${state.h.describe()} and ${state.c.describe()}`,
    );
  }
  return tidyUnlessRecording(() => {
    const masks = useScan ? [] : stepMasks(lengths, b, steps);
    const mask = useScan ? scanMask(lengths, b, steps) : undefined;
    const initial = (k: number): LSTMState | null =>
      state
        ? {
          h: ops.reshape(ops.slice(state.h, [k, 0, 0], [k + 1, b, hidden]), [b, hidden]),
          c: ops.reshape(ops.slice(state.c, [k, 0, 0], [k + 1, b, hidden]), [b, hidden]),
        }
        : null;
    const finals: LSTMState[] = [];
    let input = x;
    for (let layer = 0; layer < layers; layer++) {
      const inSize = input.shape[2];
      const flat = ops.reshape(input, [b * steps, inSize]);
      const dirOutputs: Tensor[] = [];
      for (let d = 0; d < dirs; d++) {
        const k = layer * dirs + d;
        const { weight, bias } = weights[k];
        const wx = ops.slice(weight, [0, 0], [4 * hidden, inSize]);
        const wh = ops.slice(weight, [0, inSize], [4 * hidden, inSize + hidden]);
        const proj = ops.reshape(
          ops.binary("add", ops.matmul(flat, wx, false, true), bias),
          [b, steps, 4 * hidden],
        );
        if (useScan) {
          const init = initial(k);
          const opts = { reverse: d === 1, mask };
          const scan = lstmScan(
            proj,
            wh,
            init?.h ?? zeros([b, hidden]),
            init?.c ?? zeros([b, hidden]),
            opts,
          );
          const v = lstmScanViews(scan, b, hidden, opts);
          dirOutputs.push(v.output);
          finals.push({ h: v.h, c: v.c });
        } else {
          const run = runDirection(proj, wh, initial(k), d === 1, masks);
          dirOutputs.push(stackSteps(run.outputs));
          finals.push(run.state);
        }
      }
      let out = dirs === 1 ? dirOutputs[0] : ops.concat(dirOutputs, 2);
      if (residual && layer > 0) out = ops.binary("add", out, input);
      if (training && dropout > 0 && layer < layers - 1) out = dropoutOp(out, dropout, options.gen);
      input = out;
    }
    const stack = (ts: Tensor[]) => ops.concat(ts.map((t) => ops.reshape(t, [1, b, hidden])), 0);
    return { output: input, h: stack(finals.map((s) => s.h)), c: stack(finals.map((s) => s.c)) };
  });
}

/** Options of {@link LSTMCell}. */
export interface LSTMCellOptions {
  /** Added to the forget-gate bias at init (TensorFlow's LSTM uses 1.0; PyTorch 0). Default 0. */
  forgetBias?: number;
  /** Random generator for the init (the default generator when omitted). */
  gen?: Generator;
}

/**
 * One LSTM cell (one layer, one direction). Parameters: `weight` `[4H, F + H]` and `bias`
 * `[4H]`, initialized U(-1/sqrt(H), 1/sqrt(H)) as in PyTorch.
 */
export class LSTMCell extends Module {
  /** Input features F. */
  readonly inputSize: number;
  /** Hidden units H. */
  readonly hiddenSize: number;
  /** Fused weight `[4H, F + H]`, gate rows in order i, f, g, o. */
  readonly weight: Tensor;
  /** Bias `[4H]`. */
  readonly bias: Tensor;

  /** Creates a cell with `inputSize` inputs and `hiddenSize` units. */
  constructor(inputSize: number, hiddenSize: number, options: LSTMCellOptions = {}) {
    super();
    for (const [name, v] of [["inputSize", inputSize], ["hiddenSize", hiddenSize]] as const) {
      if (!Number.isInteger(v) || v < 1) {
        throw new Error(`LSTMCell: ${name} must be >= 1, got ${v}`);
      }
    }
    this.inputSize = inputSize;
    this.hiddenSize = hiddenSize;
    const k = 1 / Math.sqrt(hiddenSize);
    const h4 = 4 * hiddenSize;
    this.weight = this.param("weight", rand([h4, inputSize + hiddenSize], -k, k, options.gen));
    const forgetBias = options.forgetBias ?? 0;
    const bias = rand([h4], -k, k, options.gen);
    this.bias = this.param(
      "bias",
      forgetBias === 0 ? bias : noGrad(() => {
        const shift = new Float32Array(h4);
        shift.fill(forgetBias, hiddenSize, 2 * hiddenSize);
        const shifted = ops.binary("add", bias, tensor(shift));
        bias.dispose();
        return shifted;
      }),
    );
  }

  /**
   * One step: `x` `[B, F]` and the previous state (zeros when omitted) to the new `{h, c}`.
   * Dispatches: concat 2, matmul 1, bias add 1, then the gate and state ops.
   */
  forward(x: Tensor, state?: LSTMState | null): LSTMState {
    return lstmCell(x, state, this);
  }
}

/** Options of {@link LSTM}. */
export interface LSTMOptions {
  /** Stacked layers (default 1). */
  numLayers?: number;
  /** Run a reverse direction too and concatenate its outputs (encoders). Default false. */
  bidirectional?: boolean;
  /** Dropout on the outputs of every layer but the last, in training mode. Default 0. */
  dropout?: number;
  /** Residual connections around layers after the first (their input and output widths agree). */
  residual?: boolean;
  /** Added to the forget-gate biases at init (TensorFlow uses 1.0). Default 0. */
  forgetBias?: number;
  /** Random generator for the init (the default generator when omitted). */
  gen?: Generator;
}

/** Options of {@link LSTM.forward}. */
export interface LSTMForwardOptions {
  /** Initial state, `[layers * dirs, B, H]` each; zeros when omitted. */
  state?: LSTMState;
  /** Valid length of each sequence (host values, 1..T); all T when omitted. */
  lengths?: ArrayLike<number>;
  /** Random generator for dropout (the default generator when omitted). */
  gen?: Generator;
}

/**
 * A multi-layer LSTM over batch-first input `[B, T, F]`. Child cells are named `l0`, `l0_reverse`,
 * `l1`, ... (parameters `l0.weight`, `l0.bias`, ...).
 */
export class LSTM extends Module {
  /** Input features F. */
  readonly inputSize: number;
  /** Hidden units H per direction. */
  readonly hiddenSize: number;
  /** Stacked layers. */
  readonly numLayers: number;
  /** 2 when bidirectional, else 1. */
  readonly numDirections: number;
  /** Dropout probability between layers. */
  readonly dropout: number;
  /** Whether layers after the first are residual. */
  readonly residual: boolean;
  /** The cells, layer-major (forward then reverse within a layer). */
  readonly cells: LSTMCell[];

  /** Creates the stack; layer 0 takes `inputSize` features, later layers `hiddenSize * dirs`. */
  constructor(inputSize: number, hiddenSize: number, options: LSTMOptions = {}) {
    super();
    const { numLayers = 1, bidirectional = false, dropout = 0, residual = false } = options;
    if (!Number.isInteger(numLayers) || numLayers < 1) {
      throw new Error(`LSTM: numLayers must be >= 1, got ${numLayers}`);
    }
    if (!(dropout >= 0 && dropout < 1)) {
      throw new Error(`LSTM: dropout must be in [0, 1), got ${dropout}`);
    }
    this.inputSize = inputSize;
    this.hiddenSize = hiddenSize;
    this.numLayers = numLayers;
    this.numDirections = bidirectional ? 2 : 1;
    this.dropout = dropout;
    this.residual = residual;
    this.cells = [];
    const cellOptions = { forgetBias: options.forgetBias, gen: options.gen };
    for (let l = 0; l < numLayers; l++) {
      const inSize = l === 0 ? inputSize : hiddenSize * this.numDirections;
      for (let d = 0; d < this.numDirections; d++) {
        const name = d === 0 ? `l${l}` : `l${l}_reverse`;
        this.cells.push(this.child(name, new LSTMCell(inSize, hiddenSize, cellOptions)));
      }
    }
  }

  /**
   * Runs the stack over `x` `[B, T, F]`.
   * @returns outputs `[B, T, H * dirs]` and final `h`, `c` `[layers * dirs, B, H]`.
   */
  forward(x: Tensor, options: LSTMForwardOptions = {}): LSTMOutput {
    if (x.ndim === 3 && x.shape[2] !== this.inputSize) {
      throw new Error(`LSTM: expected ${this.inputSize} input features, got ${x.describe()}`);
    }
    return lstm(x, this.cells, {
      ...options,
      bidirectional: this.numDirections === 2,
      dropout: this.dropout,
      residual: this.residual,
      training: this.training,
    });
  }
}
