/**
 * JavaScript source of each kernel family for gpu/cpu/codegen.ts (map, place, reduce, matmul,
 * im2col/col2im, max pooling, Adam, SGD, random fills, the LSTM step, categorical sampling), with
 * the strided nested loops they share; shapes and strides are baked in as constants.
 * @module
 */

import {
  colCols,
  inputKinds,
  type KernelSpec,
  lstmActsOffset,
  numel,
  planReduce,
} from "../kernel.ts";
import { exprStatements, view } from "./codegen_expr.ts";

/**
 * Nested loops over `shape` keeping one running element offset per entry of `strides` (named
 * `<ptr><k>`, starting at `bases[k]`), with `body` innermost; `<counter>` (declared by the
 * caller) counts the iterations row-major and `<loopVar><d>` are the loop indices.
 */
function nestedLoops(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  bases: readonly string[],
  body: string,
  names = { loopVar: "a", ptr: "p", counter: "i" },
): string {
  const { loopVar, ptr, counter } = names;
  if (shape.length === 0) {
    const ptrs = strides.map((_, k) => `const ${ptr}${k} = ${bases[k]};`).join(" ");
    return `{ ${ptrs} ${body} ${counter}++; }`;
  }
  const lines: string[] = [];
  const depth = shape.length;
  for (let d = 0; d < depth; d++) {
    const prev = (k: number) => (d === 0 ? bases[k] : `${ptr}${k}_${d - 1}`);
    lines.push(`for (let ${loopVar}${d} = 0; ${loopVar}${d} < ${shape[d]}; ${loopVar}${d}++) {`);
    for (let k = 0; k < strides.length; k++) {
      const st = strides[k][d];
      const name = d === depth - 1 ? `${ptr}${k}` : `${ptr}${k}_${d}`;
      lines.push(`const ${name} = ${prev(k)}${st ? ` + ${loopVar}${d} * ${st}` : ""};`);
    }
  }
  lines.push(body, `${counter}++;`);
  for (let d = 0; d < depth; d++) lines.push("}");
  return lines.join("\n");
}

export function mapSource(spec: Extract<KernelSpec, { kind: "map" }>): string {
  const n = numel(spec.shape);
  const c = inputKinds(spec.shape, spec.inputs);
  const types = spec.inputs.map((i) => i.dtype);
  const outIdx = spec.inputs.length;
  const O = view(spec.out);
  const pre: string[] = [];
  const strided: number[] = [];
  spec.inputs.forEach((inp, k) => {
    const base = `o[${k}] + ${inp.offset ?? 0}`;
    if (c.kinds[k] === "scalar") pre.push(`const s${k} = ${view(inp.dtype)}[${base}];`);
    else pre.push(`const b${k} = ${base};`);
    if (c.kinds[k] === "strided") strided.push(k);
  });
  const { stmts, result } = exprStatements(spec.expr, types, spec.out, (k) => {
    if (c.kinds[k] === "scalar") return `s${k}`;
    if (c.kinds[k] === "contiguous") return `${view(types[k])}[b${k} + i]`;
    return `${view(types[k])}[p${strided.indexOf(k)}]`;
  }, `${O}[ob + i]`);
  const body = [...stmts, `${O}[ob + i] = ${result};`].join("\n");
  pre.push(`const ob = o[${outIdx}] + ${spec.outOffset ?? 0};`);
  if (strided.length === 0) {
    return `${pre.join("\n")}\nfor (let i = 0; i < ${n}; i++) {\n${body}\n}`;
  }
  const loops = nestedLoops(
    c.shape,
    strided.map((k) => c.strides[k]),
    strided.map((k) => `b${k}`),
    body,
  );
  return `${pre.join("\n")}\nlet i = 0;\n${loops}`;
}

export function placeSource(spec: Extract<KernelSpec, { kind: "place" }>): string {
  const v = view(spec.dtype);
  // Collapse the placement like a map whose "input" is the destination.
  const c = inputKinds(spec.shape, [{ dtype: spec.dtype, strides: spec.outStrides }]);
  if (spec.accumulate) {
    return `const s = o[0];
let i = 0;
${nestedLoops(c.shape, [c.strides[0]], [`o[1] + ${spec.offset}`], `${v}[p0] += ${v}[s + i];`)}`;
  }
  if (c.kinds[0] === "contiguous") {
    const n = numel(spec.shape);
    return `const s = o[0], d = o[1] + ${spec.offset};
${v}.copyWithin(d, s, s + ${n});`;
  }
  return `const s = o[0];
let i = 0;
${nestedLoops(c.shape, [c.strides[0]], [`o[1] + ${spec.offset}`], `${v}[p0] = ${v}[s + i];`)}`;
}

export function reduceSource(spec: Extract<KernelSpec, { kind: "reduce" }>): string {
  const plan = planReduce(spec.shape, spec.axes, spec.inputs.map((i) => i.strides));
  const out = spec.op === "argmax" ? "I" : "F";
  const n = spec.inputs.length;
  const bases = spec.inputs.map((inp, k) => `o[${k}] + ${inp.offset ?? 0}`);
  const outer = nestedLoops(plan.keepShape, plan.keepStrides, bases, "BODY");
  const { stmts, result } = exprStatements(
    spec.expr,
    spec.inputs.map((i) => i.dtype),
    "f32",
    (k) => `${view(spec.inputs[k].dtype)}[q${k}]`,
    "0",
  );
  const names = { loopVar: "c", ptr: "q", counter: "r" };
  const red = (combine: string) => {
    const body = `${stmts.join("\n")}\nconst v = ${result};\n${combine}`;
    const starts = spec.inputs.map((_, k) => `p${k}`);
    return `let r = 0;\n${nestedLoops(plan.redShape, plan.redStrides, starts, body, names)}`;
  };
  let inner: string;
  if (spec.op === "sum") {
    inner = `let acc = 0;\n${red("acc += v;")}\n${out}[o[${n}] + i] = acc;`;
  } else {
    inner = `let acc = -Infinity, best = 0;
${red("if (acc === acc && (v !== v || v > acc)) { acc = v; best = r; }")}
${out}[o[${n}] + i] = ${spec.op === "argmax" ? "best" : "acc"};`;
  }
  return `let i = 0;\n${outer.replace("BODY", inner)}`;
}

export function matmulSource(spec: Extract<KernelSpec, { kind: "matmul" }>): string {
  const { m, n, k } = spec;
  const [sai, sap] = spec.transA ? [1, m] : [k, 1];
  const [sbp, sbj] = spec.transB ? [1, k] : [n, 1];
  return `const acc = new Float64Array(${n});
for (let bat = 0; bat < ${spec.batch}; bat++) {
  const a0 = o[0] + bat * ${spec.batchStrideA}, b0 = o[1] + bat * ${spec.batchStrideB};
  const c0 = o[2] + bat * ${m * n};
  for (let r = 0; r < ${m}; r++) {
    acc.fill(0);
    for (let p = 0; p < ${k}; p++) {
      const a = F[a0 + r * ${sai} + p * ${sap}];
      const bp = b0 + p * ${sbp};
      for (let j = 0; j < ${n}; j++) acc[j] += a * F[bp + j * ${sbj}];
    }
    const cr = c0 + r * ${n};
    for (let j = 0; j < ${n}; j++) F[cr + j] = acc[j];
  }
}`;
}

export function im2colSource(spec: Extract<KernelSpec, { kind: "im2col" }>): string {
  const g = spec.g;
  const cols = colCols(g);
  return `const x = o[0], out = o[1];
for (let c = 0; c < ${g.c}; c++)
for (let ki = 0; ki < ${g.kh}; ki++)
for (let kj = 0; kj < ${g.kw}; kj++) {
  let q = out + ((c * ${g.kh} + ki) * ${g.kw} + kj) * ${cols};
  for (let nn = 0; nn < ${g.n}; nn++) {
    const plane = x + (nn * ${g.c} + c) * ${g.h * g.w};
    for (let oh = 0; oh < ${g.outH}; oh++) {
      const ih = oh * ${g.strideH} - ${g.padTop} + ki * ${g.dilationH};
      if (ih < 0 || ih >= ${g.h}) { F.fill(0, q, q + ${g.outW}); q += ${g.outW}; continue; }
      const row = plane + ih * ${g.w};
      for (let ow = 0; ow < ${g.outW}; ow++) {
        const iw = ow * ${g.strideW} - ${g.padLeft} + kj * ${g.dilationW};
        F[q++] = iw >= 0 && iw < ${g.w} ? F[row + iw] : 0;
      }
    }
  }
}`;
}

export function col2imSource(spec: Extract<KernelSpec, { kind: "col2im" }>): string {
  const g = spec.g;
  const cols = colCols(g);
  // Scatter form (each column entry added into its pixel), in the same summation order per
  // pixel as the gather of the WGSL kernel: taps (ki, kj) ascending.
  return `const src = o[0], x = o[1];
F.fill(0, x, x + ${g.n * g.c * g.h * g.w});
for (let c = 0; c < ${g.c}; c++)
for (let ki = 0; ki < ${g.kh}; ki++)
for (let kj = 0; kj < ${g.kw}; kj++) {
  let q = src + ((c * ${g.kh} + ki) * ${g.kw} + kj) * ${cols};
  for (let nn = 0; nn < ${g.n}; nn++) {
    const plane = x + (nn * ${g.c} + c) * ${g.h * g.w};
    for (let oh = 0; oh < ${g.outH}; oh++) {
      const ih = oh * ${g.strideH} - ${g.padTop} + ki * ${g.dilationH};
      if (ih < 0 || ih >= ${g.h}) { q += ${g.outW}; continue; }
      const row = plane + ih * ${g.w};
      for (let ow = 0; ow < ${g.outW}; ow++, q++) {
        const iw = ow * ${g.strideW} - ${g.padLeft} + kj * ${g.dilationW};
        if (iw >= 0 && iw < ${g.w}) F[row + iw] = fr(F[row + iw] + F[q]);
      }
    }
  }
}`;
}

export function maxPoolSource(spec: Extract<KernelSpec, { kind: "maxPool2d" }>): string {
  const g = spec.g;
  return `const x = o[0], out = o[1], idx = o[1] + ${spec.idxOffset};
let i = 0;
for (let plane = 0; plane < ${g.n * g.c}; plane++) {
  const base = x + plane * ${g.h * g.w};
  for (let oh = 0; oh < ${g.outH}; oh++)
  for (let ow = 0; ow < ${g.outW}; ow++, i++) {
    const h0 = oh * ${g.strideH} - ${g.padTop}, w0 = ow * ${g.strideW} - ${g.padLeft};
    let best = 0, bestIdx = -1;
    for (let ki = 0; ki < ${g.kh}; ki++) {
      const h = h0 + ki;
      if (h < 0 || h >= ${g.h}) continue;
      for (let kj = 0; kj < ${g.kw}; kj++) {
        const w = w0 + kj;
        if (w < 0 || w >= ${g.w}) continue;
        const at = h * ${g.w} + w, v = F[base + at];
        if (bestIdx < 0 || (best === best && (v !== v || v > best))) { best = v; bestIdx = at; }
      }
    }
    F[out + i] = best;
    I[idx + i] = bestIdx;
  }
}`;
}

export function maxPoolBackwardSource(
  spec: Extract<KernelSpec, { kind: "maxPool2dBackward" }>,
): string {
  const g = spec.g;
  return `const grad = o[0], idx = o[1], dx = o[2];
F.fill(0, dx, dx + ${g.n * g.c * g.h * g.w});
let i = 0;
for (let plane = 0; plane < ${g.n * g.c}; plane++) {
  const base = dx + plane * ${g.h * g.w};
  for (let k = 0; k < ${g.outH * g.outW}; k++, i++) {
    const at = I[idx + i];
    if (at >= 0) F[base + at] = fr(F[base + at] + F[grad + i]);
  }
}`;
}

export function adamSource(spec: Extract<KernelSpec, { kind: "adam" }>): string {
  const { start, n, slot } = spec.span;
  const grad = spec.decay === "l2" ? "F[g + e] + wd * p" : "F[g + e]";
  const decayed = spec.decay === "decoupled" ? "p - lr * wd * p" : "p";
  return `const h = o[0], t = F[o[1] + ${slot}], par = o[2], g = o[3], m = o[4], v = o[5];
const lr = F[h], b1 = F[h + 1], b2 = F[h + 2], eps = F[h + 3], wd = F[h + 4];
const omb1 = F[h + 5], omb2 = F[h + 6];
const stepSize = lr / oneMinusPow(F[h + 7], t);
const rootBc2 = Math.sqrt(oneMinusPow(F[h + 8], t));
for (let e = ${start}; e < ${start + n}; e++) {
  const p = F[par + e];
  const gr = ${grad};
  const m1 = fr(b1 * F[m + e] + omb1 * gr);
  const v1 = fr(b2 * F[v + e] + omb2 * gr * gr);
  F[m + e] = m1;
  F[v + e] = v1;
  F[par + e] = ${decayed} - stepSize * m1 / (Math.sqrt(v1) / rootBc2 + eps);
}`;
}

export function sgdSource(spec: Extract<KernelSpec, { kind: "sgd" }>): string {
  const { start, n, slot } = spec.span;
  const dir = spec.momentum
    ? `const b = first ? gr : fr(mom * F[buf + e] + omd * gr);
  F[buf + e] = b;
  const d = ${spec.nesterov ? "fr(gr + mom * b)" : "b"};`
    : "const d = gr;";
  return `const h = o[0], first = F[o[1] + ${slot}] === 1, par = o[2], g = o[3], buf = o[4];
const lr = F[h], mom = F[h + 1], wd = F[h + 3], omd = F[h + 4];
for (let e = ${start}; e < ${start + n}; e++) {
  const p = F[par + e];
  const gr = fr(F[g + e] + wd * p);
  ${dir}
  F[par + e] = p - lr * d;
}`;
}

export function randomSource(spec: Extract<KernelSpec, { kind: "random" }>): string {
  const a = Math.fround(spec.a), b = Math.fround(spec.b);
  const unit = (lane: number) => `((rand(seed, stream, i, ${lane}) >>> 8) * ${1 / 16777216})`;
  const value = spec.dist === "uniform"
    ? `${a} + ${Math.fround(b - a)} * ${unit(0)}`
    : spec.dist === "normal"
    ? `${a} + ${b} * Math.sqrt(-2 * Math.log(((rand(seed, stream, i, 0) >>> 8) + 1) * ${
      1 / 16777216
    })) * Math.cos(6.283185307179586 * ${unit(1)})`
    : `(${unit(0)} < ${a} ? 1 : 0)`;
  return `const seed = U[o[0]], stream = U[o[0] + 1], out = o[1];
for (let i = 0; i < ${spec.n}; i++) F[out + i] = ${value};`;
}

/** One step of the fused LSTM scan (buffers and layout: `LstmStepSpec` in gpu/kernel.ts). */
export function lstmStepSource(s: Extract<KernelSpec, { kind: "lstmStep" }>): string {
  const H = s.h, bh = s.b * s.h, acts = lstmActsOffset(s), m = s.masked ? 1 : 0;
  const head = `const t = I[o[${s.backward ? 1 + m : 2 + m}]];
const hp0 = ${s.reverse ? "(t + 1)" : "t"} * ${2 * s.slot}, hn0 = ${
    s.reverse ? "t" : "(t + 1)"
  } * ${2 * s.slot};
for (let b = 0; b < ${s.b}; b++) {
  const valid = ${s.masked ? `F[MASK + b * ${s.steps} + t] !== 0` : "true"};
  for (let j = 0; j < ${H}; j++) {
    const i = b * ${H} + j, hp = S + hp0 + i, hn = S + hn0 + i;
    const g0 = (b * ${s.steps} + t) * ${4 * H} + j, a = S + ${acts} + g0;`;
  if (!s.backward) {
    return `const P = o[0], R = o[1]${s.masked ? ", MASK = o[2]" : ""}, S = o[${3 + m}];
${head}
    const r0 = R + b * ${4 * H} + j, p0 = P + g0;
    const ig = sigmoidf(fr(F[p0] + F[r0]));
    const fg = sigmoidf(fr(F[p0 + ${H}] + F[r0 + ${H}]));
    const gg = tanhf(fr(F[p0 + ${2 * H}] + F[r0 + ${2 * H}]));
    const og = sigmoidf(fr(F[p0 + ${3 * H}] + F[r0 + ${3 * H}]));
    const cPrev = F[hp + ${s.slot}];
    const c = fr(fr(fg * cPrev) + fr(ig * gg));
    const h = fr(og * tanhf(c));
    F[hn] = valid ? h : F[hp];
    F[hn + ${s.slot}] = valid ? c : cPrev;
    F[a] = ig; F[a + ${H}] = fg; F[a + ${2 * H}] = gg; F[a + ${3 * H}] = og;
  }
}`;
  }
  return `const S = o[0]${s.masked ? ", MASK = o[1]" : ""}, DS = o[${2 + m}], DH = o[${
    3 + m
  }], CI = o[${4 + m}], DP = o[${5 + m}], CO = o[${6 + m}];
${head}
    const ig = F[a], fg = F[a + ${H}], gg = F[a + ${2 * H}], og = F[a + ${3 * H}];
    const cPrev = F[hp + ${s.slot}];
    const c = fr(fr(fg * cPrev) + fr(ig * gg));
    const tc = tanhf(c);
    const gh = fr(fr(F[DS + hn0 + i] + F[DH + i]) + F[CI + ${5 * bh} + i]);
    const gc = fr(F[DS + hn0 + ${s.slot} + i] + F[CI + ${4 * bh} + i]);
    const dh = valid ? gh : 0;
    const dc = fr((valid ? gc : 0) + fr(fr(dh * og) * fr(1 - fr(tc * tc))));
    const di = fr(fr(fr(dc * gg) * ig) * fr(1 - ig));
    const df = fr(fr(fr(dc * cPrev) * fg) * fr(1 - fg));
    const dg = fr(fr(dc * ig) * fr(1 - fr(gg * gg)));
    const dO = fr(fr(fr(dh * tc) * og) * fr(1 - og));
    const d = DP + g0, q = CO + b * ${4 * H} + j;
    F[d] = di; F[d + ${H}] = df; F[d + ${2 * H}] = dg; F[d + ${3 * H}] = dO;
    F[q] = di; F[q + ${H}] = df; F[q + ${2 * H}] = dg; F[q + ${3 * H}] = dO;
    F[CO + ${4 * bh} + i] = fr(fr(dc * fg) + (valid ? 0 : gc));
    F[CO + ${5 * bh} + i] = valid ? 0 : gh;
  }
}`;
}

export function categoricalSource(spec: Extract<KernelSpec, { kind: "categorical" }>): string {
  const [probs, out] = spec.rowSeeds ? ["o[2]", "o[3]"] : ["o[1]", "o[2]"];
  const unit = spec.rowSeeds
    ? `(rand(U[o[1] + row], stream, 0, 0) >>> 8) * ${1 / 16777216}`
    : `(rand(seed, stream, row, 0) >>> 8) * ${1 / 16777216}`;
  return `const seed = U[o[0]], stream = U[o[0] + 1], probs = ${probs}, out = ${out};
for (let row = 0; row < ${spec.rows}; row++) {
  const base = probs + row * ${spec.k};
  let total = 0;
  for (let j = 0; j < ${spec.k}; j++) total = fr(total + Math.max(F[base + j], 0));
  const u = fr(fr(${unit}) * total);
  let acc = 0, pick = ${spec.k - 1};
  for (let j = 0; j < ${spec.k}; j++) {
    acc = fr(acc + Math.max(F[base + j], 0));
    if (u < acc) { pick = j; break; }
  }
  I[out + row] = pick;
}`;
}
