/**
 * Host side of the optimizer kernels: fused SGD/Adam updates over a flat range, the step-counter
 * advance, the gradient-norm reduction and the clip scale. Each takes a {@link Grid}: a direct
 * workgroup count, or an indirect-args storage written on the GPU (see gpu/shaders/optim.ts: all
 * these kernels are correct for any dispatch size, and a zero count skips them).
 * @module
 */

import type { Backend, Binding, Grid } from "../backend.ts";
import {
  adamShader,
  advanceShader,
  clipScaleShader,
  normShader,
  OPTIM_WG,
  sgdShader,
  type UpdateSpan,
  type WeightDecayMode,
} from "../shaders/optim.ts";
import { bind, type BufferRef } from "./buffer_ref.ts";

/** Most workgroups a direct element-kernel dispatch uses (the kernels loop beyond that). */
const MAX_GROUPS = 4096;

/** The direct grid an element kernel over `n` elements uses (one thread per element, capped). */
export function updateGrid(n: number): [number, number, number] {
  return [Math.min(Math.max(Math.ceil(n / OPTIM_WG), 1), MAX_GROUPS), 1, 1];
}

/** The buffers of an update: hyperparameters, counters, params, grads, and optimizer state. */
export interface UpdateBuffers {
  /** Hyperparameter buffer (layout: ADAM_HYPER or SGD_HYPER). */
  hyper: BufferRef;
  /** Step counters, one f32 per slot. */
  counters: BufferRef;
  /** Flat parameters. */
  params: BufferRef;
  /** Flat gradients. */
  grads: BufferRef;
  /** Per-element state buffers (Adam: m, v; SGD with momentum: the momentum buffer). */
  state: BufferRef[];
}

function updateBindings(b: UpdateBuffers): Binding[] {
  return [
    bind(b.hyper, "read"),
    bind(b.counters, "read"),
    bind(b.params, "read_write"),
    bind(b.grads, "read"),
    ...b.state.map((s) => bind(s, "read_write")),
  ];
}

/** Adds 1 to counter `slot` (one thread; `grid` may be the update's grid, for gating). */
export function runAdvance(be: Backend, counters: BufferRef, slot: number, grid: Grid): void {
  be.run(
    { code: advanceShader(slot), name: "optim_advance" },
    [bind(counters, "read_write")],
    grid,
  );
}

/** One fused Adam step over `span` (advance the counter first). */
export function runAdam(
  be: Backend,
  span: UpdateSpan,
  decay: WeightDecayMode,
  buffers: UpdateBuffers,
  grid: Grid = updateGrid(span.n),
): void {
  be.run({ code: adamShader(span, decay), name: "adam" }, updateBindings(buffers), grid);
}

/** One fused SGD step over `span` (advance the counter first). */
export function runSgd(
  be: Backend,
  span: UpdateSpan,
  nesterov: boolean,
  buffers: UpdateBuffers,
  grid: Grid = updateGrid(span.n),
): void {
  const code = sgdShader(span, buffers.state.length > 0, nesterov);
  be.run({ code, name: "sgd" }, updateBindings(buffers), grid);
}

/** Writes the L2 norm of `x[start, start + n)` into `out` element `outIndex` (one workgroup). */
export function runNorm(
  be: Backend,
  x: BufferRef,
  start: number,
  n: number,
  out: BufferRef,
  outIndex = 0,
  grid: Grid = [1, 1, 1],
): void {
  be.run(
    { code: normShader(start, n, outIndex), name: "norm" },
    [bind(x, "read"), bind(out, "read_write")],
    grid,
  );
}

/** Scales `grads[start, start + n)` by min(1, maxNorm / (norm + 1e-6)), `norm` read on the GPU. */
export function runClipScale(
  be: Backend,
  norm: BufferRef,
  grads: BufferRef,
  start: number,
  n: number,
  maxNorm: number,
  grid: Grid = updateGrid(n),
): void {
  be.run(
    { code: clipScaleShader(start, n, maxNorm), name: "clip_scale" },
    [bind(norm, "read"), bind(grads, "read_write")],
    grid,
  );
}
