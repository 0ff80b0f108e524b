/**
 * WGSL for one step of the fused LSTM scan (see `LstmStepSpec` in gpu/kernel.ts): all four gates,
 * the state update and the saved activations in one kernel forward; the gate gradients, the cell
 * gradient and the masked pass-through in one kernel backward. One thread per (row, unit).
 * @module
 */

import { lstmActsOffset, type LstmStepSpec } from "../../kernel.ts";
import { BUILTINS, linearIndex, NAN_HELPERS, u32 } from "./common.ts";
import { EXPR_HELPERS } from "./elementwise.ts";

/** Shared index arithmetic: row `b`, unit `j`, the step `t`, the slots it reads and writes. */
function prologue(s: LstmStepSpec, nx: number): string {
  const prev = s.reverse ? "(t + 1u)" : "t";
  const next = s.reverse ? "t" : "(t + 1u)";
  return `let i = ${linearIndex(nx)};
  if (i >= ${u32(s.b * s.h)}) { return; }
  let b = i / ${u32(s.h)};
  let j = i % ${u32(s.h)};
  let t = u32(step[0]);
  let hp = ${prev} * ${u32(2 * s.slot)} + i;
  let hn = ${next} * ${u32(2 * s.slot)} + i;
  let g0 = (b * ${u32(s.steps)} + t) * ${u32(4 * s.h)} + j;
  let valid = ${s.masked ? `mask[b * ${u32(s.steps)} + t] != 0.0` : "true"};`;
}

/** WGSL of the forward step; bindings proj, r, (mask), step, state. */
export function lstmForwardShader(s: LstmStepSpec, nx: number): string {
  const H = s.h;
  const acts = lstmActsOffset(s);
  const bind = ["proj", "r", ...(s.masked ? ["mask"] : [])];
  return `${
    bind.map((n, k) => `@group(0) @binding(${k}) var<storage, read> ${n}: array<f32>;`)
      .join("\n")
  }
@group(0) @binding(${bind.length}) var<storage, read> step: array<i32>;
@group(0) @binding(${bind.length + 1}) var<storage, read_write> state: array<f32>;
${NAN_HELPERS}
${EXPR_HELPERS}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${prologue(s, nx)}
  let r0 = b * ${u32(4 * H)} + j;
  let ig = sigmoid(proj[g0] + r[r0]);
  let fg = sigmoid(proj[g0 + ${u32(H)}] + r[r0 + ${u32(H)}]);
  let gg = tanh_safe(proj[g0 + ${u32(2 * H)}] + r[r0 + ${u32(2 * H)}]);
  let og = sigmoid(proj[g0 + ${u32(3 * H)}] + r[r0 + ${u32(3 * H)}]);
  let cPrev = state[hp + ${u32(s.slot)}];
  let c = fg * cPrev + ig * gg;
  let h = og * tanh_safe(c);
  state[hn] = select(state[hp], h, valid);
  state[hn + ${u32(s.slot)}] = select(cPrev, c, valid);
  let a = ${u32(acts)} + g0;
  state[a] = ig;
  state[a + ${u32(H)}] = fg;
  state[a + ${u32(2 * H)}] = gg;
  state[a + ${u32(3 * H)}] = og;
}`;
}

/** WGSL of the backward step; bindings state, (mask), step, dState, dhIn, cin, dProj, cout. */
export function lstmBackwardShader(s: LstmStepSpec, nx: number): string {
  const H = s.h;
  const bh = s.b * s.h;
  const acts = lstmActsOffset(s);
  const bind = ["state", ...(s.masked ? ["mask"] : [])];
  const k = bind.length;
  return `${
    bind.map((n, q) => `@group(0) @binding(${q}) var<storage, read> ${n}: array<f32>;`)
      .join("\n")
  }
@group(0) @binding(${k}) var<storage, read> step: array<i32>;
@group(0) @binding(${k + 1}) var<storage, read> dState: array<f32>;
@group(0) @binding(${k + 2}) var<storage, read> dhIn: array<f32>;
@group(0) @binding(${k + 3}) var<storage, read> cin: array<f32>;
@group(0) @binding(${k + 4}) var<storage, read_write> dProj: array<f32>;
@group(0) @binding(${k + 5}) var<storage, read_write> cout: array<f32>;
${NAN_HELPERS}
${EXPR_HELPERS}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${prologue(s, nx)}
  let a = ${u32(acts)} + g0;
  let ig = state[a];
  let fg = state[a + ${u32(H)}];
  let gg = state[a + ${u32(2 * H)}];
  let og = state[a + ${u32(3 * H)}];
  let cPrev = state[hp + ${u32(s.slot)}];
  let c = fg * cPrev + ig * gg;
  let tc = tanh_safe(c);
  let gh = dState[hn] + dhIn[i] + cin[${u32(5 * bh)} + i];
  let gc = dState[hn + ${u32(s.slot)}] + cin[${u32(4 * bh)} + i];
  let dh = select(0.0, gh, valid);
  let dc = select(0.0, gc, valid) + dh * og * (1.0 - tc * tc);
  let di = dc * gg * ig * (1.0 - ig);
  let df = dc * cPrev * fg * (1.0 - fg);
  let dg = dc * ig * (1.0 - gg * gg);
  let dO = dh * tc * og * (1.0 - og);
  dProj[g0] = di;
  dProj[g0 + ${u32(H)}] = df;
  dProj[g0 + ${u32(2 * H)}] = dg;
  dProj[g0 + ${u32(3 * H)}] = dO;
  let q = b * ${u32(4 * H)} + j;
  cout[q] = di;
  cout[q + ${u32(H)}] = df;
  cout[q + ${u32(2 * H)}] = dg;
  cout[q + ${u32(3 * H)}] = dO;
  cout[${u32(4 * bh)} + i] = dc * fg + select(gc, 0.0, valid);
  cout[${u32(5 * bh)} + i] = select(gh, 0.0, valid);
}`;
}
