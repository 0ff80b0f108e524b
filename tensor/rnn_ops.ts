/**
 * The fused LSTM scan: one primitive for the recurrence of one LSTM layer and direction over a
 * whole sequence, with its own gradient rule. Per time step it runs two kernels forward (the
 * recurrent matmul `h_prev @ W_hh^T` and one `lstmStep` kernel: all four gates, the state update
 * and the saved activations) and two backward (one `lstmStep` kernel: the gate gradients, the cell
 * gradient, the masked pass-through; and `dGates @ W_hh`), plus one matmul per sequence for the
 * gradient of `W_hh`. The composition it replaces (slice, matmul, add, sigmoid/tanh maps, state
 * maps per step, and their generic gradients) runs about 35 kernels per step forward and
 * backward; nn/rnn.ts keeps it as the reference (`setLstmScan(false)`), and the tests compare the
 * two.
 *
 * Layout: the scan's output is the state storage `[steps + 1, 2, slot]` (slot `s` holds `[h | c]`
 * after `s` steps in processing order; see `LstmStepSpec` in gpu/kernel.ts); the gate activations
 * live in the same storage after it, so they die with it. {@link lstmScanViews} gives the outputs
 * `[B, T, H]` and the final state as views of it.
 *
 * Importing this module registers the gradient rule of `lstmScan` in `GRAD_RULES`.
 * @module
 */

import { backend, type BufferRef, OFFSET_ALIGN, type Storage } from "../gpu/backend.ts";
import type { LstmStepSpec } from "../gpu/kernel.ts";
import { lstmActsOffset } from "../gpu/kernel.ts";
import { GRAD_RULES, type GradRule } from "./autograd.ts";
import { zeros } from "./functional.ts";
import * as ops from "./ops.ts";
import { isGradEnabled, Tensor } from "./tensor.ts";

/** Options of {@link lstmScan}. */
export interface LstmScanOptions {
  /** Run the steps from the last to the first (the reverse direction of a bidirectional LSTM). */
  reverse?: boolean;
  /**
   * Valid steps `[B, T]` (1 valid, 0 padded; not differentiated): a padded step carries the
   * state unchanged and its output is 0. Omit when every sequence has all T steps.
   */
  mask?: Tensor;
}

/** What {@link lstmScanViews} returns. */
export interface LstmScanViews {
  /** Hidden state after every step, in time order, `[B, T, H]` (0 at padded steps). */
  output: Tensor;
  /** Final hidden state `[B, H]`. */
  h: Tensor;
  /** Final cell state `[B, H]`. */
  c: Tensor;
}

/** Elements per state part: b * h rounded up so that every part starts 256-byte aligned. */
function slotSize(b: number, h: number): number {
  const align = OFFSET_ALIGN / 4;
  return Math.ceil((b * h) / align) * align;
}

/** Step-index buffers (element `t * 64` holds `t`), per backend, per sequence length. */
const stepBuffers = new WeakMap<object, Map<number, Storage>>();

function stepRef(steps: number, t: number): BufferRef {
  const be = backend();
  let byLength = stepBuffers.get(be);
  if (!byLength) stepBuffers.set(be, byLength = new Map());
  let s = byLength.get(steps);
  if (!s) {
    const stride = OFFSET_ALIGN / 4;
    const data = new Int32Array(steps * stride);
    for (let k = 0; k < steps; k++) data[k * stride] = k;
    s = be.alloc(data.byteLength);
    be.write(s, data);
    byLength.set(steps, s);
  }
  return { storage: s, offset: t * OFFSET_ALIGN, numel: 1 };
}

function checkScan(proj: Tensor, wh: Tensor, h0: Tensor, c0: Tensor, mask?: Tensor) {
  if (proj.ndim !== 3 || proj.shape[2] % 4 !== 0) {
    throw new Error(`lstmScan: proj must be [B, T, 4H], got ${proj.describe()}`);
  }
  const [b, steps, h4] = proj.shape;
  const h = h4 / 4;
  const want = (t: Tensor, shape: number[], what: string) => {
    if (t.shape.join() !== shape.join() || t.dtype !== "f32") {
      throw new Error(`lstmScan: ${what} must be f32 [${shape.join(", ")}], got ${t.describe()}`);
    }
  };
  want(wh, [h4, h], "the recurrent weight");
  want(h0, [b, h], "h0");
  want(c0, [b, h], "c0");
  if (mask) want(mask, [b, steps], "the mask");
  if (steps < 1 || b < 1 || h < 1) throw new Error(`lstmScan: empty input ${proj.describe()}`);
  return { b, steps, h };
}

/**
 * Runs an LSTM recurrence over a sequence: for each step `t` (in processing order),
 * `gates = proj[:, t] + h @ wh^T`, then PyTorch's update with gates (i, f, g, o).
 * @param proj the input projection with bias, `[B, T, 4H]`.
 * @param wh the recurrent weight `[4H, H]`.
 * @param h0 initial hidden state `[B, H]`.
 * @param c0 initial cell state `[B, H]`.
 * @returns the state storage `[T + 1, 2, slot]` (read it through {@link lstmScanViews}).
 */
export function lstmScan(
  proj: Tensor,
  wh: Tensor,
  h0: Tensor,
  c0: Tensor,
  options: LstmScanOptions = {},
): Tensor {
  const { reverse = false, mask } = options;
  const { b, steps, h } = checkScan(proj, wh, h0, c0, mask);
  const slot = slotSize(b, h);
  const spec: LstmStepSpec = { backward: false, reverse, masked: !!mask, b, h, steps, slot };
  const total = lstmActsOffset(spec) + b * steps * 4 * h;
  const be = backend();
  const storage = be.alloc(total * 4);
  const out = new Tensor(storage, [steps + 1, 2, slot], "f32", 0, "lstmScan");
  const whole: BufferRef = { storage, offset: 0, numel: total };
  const first = reverse ? steps : 0;
  for (const [k, src] of [h0, c0].entries()) {
    be.run(
      {
        kind: "place",
        shape: [b * h],
        outStrides: [1],
        offset: (2 * first + k) * slot,
        dtype: "f32",
      },
      [src.refFor("lstmScan"), whole],
    );
  }
  const projRef = proj.refFor("lstmScan");
  const whRef = wh.refFor("lstmScan");
  const maskRef = mask ? [mask.refFor("lstmScan")] : [];
  const r = be.alloc(b * 4 * h * 4);
  const rRef: BufferRef = { storage: r, offset: 0, numel: b * 4 * h };
  for (let k = 0; k < steps; k++) {
    const t = reverse ? steps - 1 - k : k;
    const prev = reverse ? t + 1 : t;
    be.run({
      kind: "matmul",
      batch: 1,
      m: b,
      k: h,
      n: 4 * h,
      transA: false,
      transB: true,
      batchStrideA: 0,
      batchStrideB: 0,
    }, [{ storage, offset: prev * 2 * slot * 4, numel: b * h }, whRef, rRef]);
    be.run({ kind: "lstmStep", ...spec }, [projRef, rRef, ...maskRef, stepRef(steps, t), whole]);
  }
  be.release(r);
  if (isGradEnabled() && [proj, wh, h0, c0].some((x) => x.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op: "lstmScan", inputs: [proj, wh, h0, c0], params: { spec, mask } };
  }
  return out;
}

/**
 * The outputs of an {@link lstmScan} as views of its state: the hidden state after every step in
 * time order `[B, T, H]` (masked), and the final `h` and `c` `[B, H]`.
 */
export function lstmScanViews(
  state: Tensor,
  b: number,
  h: number,
  options: LstmScanOptions = {},
): LstmScanViews {
  const { reverse = false, mask } = options;
  const steps = state.shape[0] - 1;
  const bh = b * h;
  const lo = reverse ? 0 : 1;
  const hs = ops.reshape(ops.slice(state, [lo, 0, 0], [lo + steps, 1, bh]), [steps, b, h]);
  let output = ops.permute(hs, [1, 0, 2]);
  if (mask) output = ops.binary("mul", output, ops.reshape(mask, [b, steps, 1]));
  const last = reverse ? 0 : steps;
  const part = (k: number) =>
    ops.reshape(ops.slice(state, [last, k, 0], [last + 1, k + 1, bh]), [b, h]);
  return { output, h: part(0), c: part(1) };
}

/** The gradient of {@link lstmScan}: the backward steps in reverse processing order. */
const lstmScanGrad: GradRule = (g, node, out, needs) => {
  const wh = node.inputs[1];
  const { spec: fwd, mask } = node.params as { spec: LstmStepSpec; mask?: Tensor };
  const { b, h, steps, reverse } = fwd;
  const spec: LstmStepSpec = { ...fwd, backward: true };
  const bh = b * h;
  const be = backend();
  const stateRef: BufferRef = {
    storage: out.storageFor("lstmScan backward"),
    offset: out.offset,
    numel: lstmActsOffset(spec) + b * steps * 4 * h,
  };
  const gRef = g.refFor("lstmScan backward");
  const whRef = wh.refFor("lstmScan backward");
  const maskRef = mask ? [mask.refFor("lstmScan backward")] : [];
  const dProj = ops.empty([b, steps, 4 * h], "f32", "lstmScan backward");
  const dProjRef = dProj.refFor("lstmScan backward");
  let dhIn = zeros([bh]);
  let cin = zeros([6 * bh]);
  for (let k = 0; k < steps; k++) {
    const t = reverse ? k : steps - 1 - k;
    const cout = ops.empty([6 * bh], "f32", "lstmScan backward");
    be.run({ kind: "lstmStep", ...spec }, [
      stateRef,
      ...maskRef,
      stepRef(steps, t),
      gRef,
      dhIn.refFor("lstmScan backward"),
      cin.refFor("lstmScan backward"),
      dProjRef,
      cout.refFor("lstmScan backward"),
    ]);
    cin.dispose();
    cin = cout;
    if (k < steps - 1 || needs[2]) {
      const dh = ops.empty([bh], "f32", "lstmScan backward");
      be.run({
        kind: "matmul",
        batch: 1,
        m: b,
        k: 4 * h,
        n: h,
        transA: false,
        transB: false,
        batchStrideA: 0,
        batchStrideB: 0,
      }, [{ ...cout.refFor("lstmScan backward"), numel: b * 4 * h }, whRef, dh.refFor("matmul")]);
      dhIn.dispose();
      dhIn = dh;
    }
  }
  const first = reverse ? steps : 0;
  const gPart = (k: number) => ops.slice(g, [first, k, 0], [first + 1, k + 1, bh]);
  const cinPart = (k: number) => ops.slice(cin, [(4 + k) * bh], [(5 + k) * bh]);
  const grads: (Tensor | null)[] = [needs[0] ? dProj : null, null, null, null];
  if (needs[1]) {
    const lo = reverse ? 1 : 0;
    const hPrev = ops.permute(
      ops.reshape(ops.slice(out, [lo, 0, 0], [lo + steps, 1, bh]), [steps, b, h]),
      [1, 0, 2],
    );
    grads[1] = ops.matmul(
      ops.reshape(dProj, [b * steps, 4 * h]),
      ops.reshape(hPrev, [b * steps, h]),
      true,
      false,
    );
  }
  if (needs[2]) {
    const s = ops.binary("add", ops.binary("add", ops.reshape(gPart(0), [bh]), dhIn), cinPart(1));
    grads[2] = ops.reshape(s, [b, h]);
  }
  if (needs[3]) {
    grads[3] = ops.reshape(ops.binary("add", ops.reshape(gPart(1), [bh]), cinPart(0)), [b, h]);
  }
  return grads;
};

GRAD_RULES.lstmScan = lstmScanGrad;
