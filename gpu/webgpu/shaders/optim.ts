/**
 * Optimizer WGSL: the fused SGD and Adam updates over an element range of flat parameter,
 * gradient and state buffers, the step-counter advance, and the gradient-norm reduction and
 * clip-scale used by global-norm clipping.
 *
 * Every kernel here is correct for ANY dispatch size: element kernels loop over their range with
 * a grid stride computed from `num_workgroups`, and single-thread or single-workgroup work runs
 * in workgroup 0 only. So the same kernel can be dispatched directly or through
 * `dispatchWorkgroupsIndirect` with whatever counts a GPU-side decision wrote (0 = skipped).
 *
 * Hyperparameters (learning rate, betas, ...) are read from a small storage buffer, not baked, so
 * changing them never compiles a new pipeline. Ranges, counter slots and mode flags are baked.
 * @module
 */

import type { UpdateSpan, WeightDecayMode } from "../../kernel.ts";
import { f32, NAN_HELPERS, u32 } from "./common.ts";

/** Threads per workgroup of the element kernels. */
export const OPTIM_WG = 64;

/** Threads of the single-workgroup norm reduction. */
export const NORM_WG = 256;

/** Builtins of a grid-stride kernel: the linear workgroup index and the total thread count. */
const GRID_STRIDE_MAIN =
  "@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, " +
  "@builtin(num_workgroups) nwg: vec3u";

/** WGSL looping `i` over [0, n) with a grid stride (any dispatch size covers the range). */
function gridStride(n: number, body: string): string {
  return `let group = wid.x + nwg.x * (wid.y + nwg.y * wid.z);
  let threads = nwg.x * nwg.y * nwg.z * ${u32(OPTIM_WG)};
  for (var i = group * ${u32(OPTIM_WG)} + lid; i < ${u32(n)}; i += threads) {
    ${body}
  }`;
}

/**
 * WGSL `one_minus_pow(log_beta, t) = 1 - beta^t`, computed as `-expm1(t * ln beta)`: a Taylor
 * polynomial for |x| < 0.5, else `1 - exp(x)`. The direct `1 - pow(beta, t)` in f32 cancels
 * catastrophically when beta^t is near 1 (relative error ~1e-4 for beta = 0.999, t = 1); this is
 * accurate to ~1e-7.
 */
export const BIAS_CORRECTION = `
fn one_minus_pow(log_beta: f32, t: f32) -> f32 {
  let x = t * log_beta;
  if (abs(x) >= 0.5) { return 1.0 - exp(x); }
  let p = 1.0 + x / 2.0 * (1.0 + x / 3.0 * (1.0 + x / 4.0 * (1.0 + x / 5.0 * (1.0 + x / 6.0 *
    (1.0 + x / 7.0 * (1.0 + x / 8.0))))));
  return -x * p;
}`;

/**
 * WGSL of a fused Adam step (PyTorch's formulation, eps outside the bias-corrected root):
 * bindings 0 hyper (read), 1 counters (read), 2 params, 3 grads (read), 4 m, 5 v. The step `t` is
 * the counter's current value (advance it first), so the bias corrections are `1 - beta^t`.
 */
export function adamShader(span: UpdateSpan, decay: WeightDecayMode): string {
  const gradient = decay === "l2" ? "grad[e] + h.weight_decay * p" : "grad[e]";
  const decayed = decay === "decoupled" ? "p - h.lr * h.weight_decay * p" : "p";
  const body = `let e = ${u32(span.start)} + i;
    let p = param[e];
    let g = ${gradient};
    let m1 = h.beta1 * m[e] + h.one_minus_beta1 * g;
    let v1 = h.beta2 * v[e] + h.one_minus_beta2 * g * g;
    m[e] = m1;
    v[e] = v1;
    param[e] = ${decayed} - step_size * m1 / (sqrt(v1) / root_bc2 + h.eps);`;
  return `struct Hyper {
  lr: f32, beta1: f32, beta2: f32, eps: f32, weight_decay: f32,
  one_minus_beta1: f32, one_minus_beta2: f32, log_beta1: f32, log_beta2: f32,
}
@group(0) @binding(0) var<storage, read> h: Hyper;
@group(0) @binding(1) var<storage, read> steps: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;
${BIAS_CORRECTION}
@compute @workgroup_size(${OPTIM_WG})
fn main(${GRID_STRIDE_MAIN}) {
  let t = steps[${u32(span.slot)}];
  let step_size = h.lr / one_minus_pow(h.log_beta1, t);
  let root_bc2 = sqrt(one_minus_pow(h.log_beta2, t));
  ${gridStride(span.n, body)}
}`;
}

/**
 * WGSL of a fused SGD step (PyTorch's formulation): bindings 0 hyper, 1 counters, 2 params,
 * 3 grads, and with momentum 4 the momentum buffer. On the first step (`t == 1`) the momentum
 * buffer is set to the gradient; then `buf = momentum * buf + (1 - dampening) * g`, and the
 * update uses `g + momentum * buf` (Nesterov) or `buf`.
 */
export function sgdShader(span: UpdateSpan, momentum: boolean, nesterov: boolean): string {
  const direction = momentum
    ? `let b = select(h.momentum * buf[e] + h.one_minus_dampening * g, g, first);
    buf[e] = b;
    let d = ${nesterov ? "g + h.momentum * b" : "b"};`
    : "let d = g;";
  const body = `let e = ${u32(span.start)} + i;
    let p = param[e];
    let g = grad[e] + h.weight_decay * p;
    ${direction}
    param[e] = p - h.lr * d;`;
  const buffer = momentum ? "@group(0) @binding(4) var<storage, read_write> buf: array<f32>;" : "";
  return `struct Hyper {
  lr: f32, momentum: f32, dampening: f32, weight_decay: f32, one_minus_dampening: f32,
}
@group(0) @binding(0) var<storage, read> h: Hyper;
@group(0) @binding(1) var<storage, read> steps: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
${buffer}
@compute @workgroup_size(${OPTIM_WG})
fn main(${GRID_STRIDE_MAIN}) {
  let first = steps[${u32(span.slot)}] == 1.0;
  ${gridStride(span.n, body)}
}`;
}

/**
 * WGSL adding 1 to step counter `slot` (binding 0, f32: exact up to 2^24 steps). Only thread 0
 * of workgroup 0 writes, so it can share an indirect dispatch with the update it precedes.
 */
export function advanceShader(slot: number): string {
  return `@group(0) @binding(0) var<storage, read_write> steps: array<f32>;
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3u) {
  if (wid.x + wid.y + wid.z == 0u) {
    steps[${u32(slot)}] = steps[${u32(slot)}] + 1.0;
  }
}`;
}

/**
 * WGSL writing the L2 norm of elements [start, start + n) of binding 0 into element `outIndex`
 * of binding 1, with one workgroup of {@link NORM_WG} threads (others exit). NaN and Inf
 * propagate into the norm.
 */
export function normShader(start: number, n: number, outIndex: number): string {
  return `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
var<workgroup> partial: array<f32, ${NORM_WG}>;
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  if (wid.x + wid.y + wid.z != 0u) { return; }
  var acc = 0.0;
  for (var i = lid; i < ${u32(n)}; i += ${u32(NORM_WG)}) {
    let g = x[${u32(start)} + i];
    acc += g * g;
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = ${u32(NORM_WG / 2)}; s > 0u; s = s >> 1u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[${u32(outIndex)}] = sqrt(partial[0]); }
}`;
}

/**
 * WGSL scaling elements [start, start + n) of binding 1 by `min(1, maxNorm / (norm + 1e-6))`
 * where `norm` is element 0 of binding 0 (PyTorch's `clip_grad_norm_`). A NaN or infinite norm
 * (tested by bit pattern) scales by NaN, so the problem propagates as it does in PyTorch.
 */
export function clipScaleShader(start: number, n: number, maxNorm: number): string {
  return `@group(0) @binding(0) var<storage, read> norm: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
${NAN_HELPERS}
@compute @workgroup_size(${OPTIM_WG})
fn main(${GRID_STRIDE_MAIN}) {
  let total = norm[0];
  let bad = is_nan(total) || is_inf(total);
  let coef = select(min(${f32(maxNorm)} / (total + 1e-6), 1.0), bitcast<f32>(0x7fc00000u), bad);
  ${gridStride(n, `grad[${u32(start)} + i] = grad[${u32(start)} + i] * coef;`)}
}`;
}
