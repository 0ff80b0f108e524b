/**
 * The CPU backend's two renderings of elementwise work agree bit for bit: every map spec is run
 * as generated JavaScript (gpu/cpu/codegen.ts) and as WebAssembly SIMD (gpu/cpu/wasm_map.ts) on
 * the same memory, over random expressions, shapes, broadcasts, strided views and special values
 * (NaN, infinities, signed zeros, subnormals). And the shared f32 exp/log/tanh/sigmoid
 * (gpu/cpu/mathf.ts) are accurate.
 */

import assert from "node:assert/strict";
import {
  type BinaryOp,
  contiguousStrides,
  type DType,
  E,
  type Expr,
  type KernelSpec,
  numel,
  type UnaryOp,
} from "../gpu/kernel.ts";
import { compileKernel } from "../gpu/cpu/codegen.ts";
import { SharedMemory } from "../gpu/cpu/memory.ts";
import { expf, logf, sigmoidf, tanhf } from "../gpu/cpu/mathf.ts";
import { buildMapModule, wasmMapSupported } from "../gpu/cpu/wasm_map.ts";
import { buildCol2imModule, buildIm2colModule } from "../gpu/cpu/wasm_conv.ts";
import { buildReduceModule, wasmReducePlan } from "../gpu/cpu/wasm_reduce.ts";
import { buildLstmStepModule } from "../gpu/cpu/wasm_lstm.ts";
import { convGeometry, convTransposeGeometry } from "../tensor/conv_ops.ts";
import {
  colCols,
  colRows,
  type ConvGeometry,
  lstmActsOffset,
  type LstmStepSpec,
} from "../gpu/kernel.ts";
import { rng } from "./helpers.ts";

type MapSpec = Extract<KernelSpec, { kind: "map" }>;

const SPECIAL = [NaN, Infinity, -Infinity, 0, -0, 1e-40, -1e-40, 3.4e38, -3.4e38, 1, -1, 0.5];

function fill(data: Float32Array, r: () => number): void {
  for (let i = 0; i < data.length; i++) {
    const u = r();
    data[i] = u < 0.1
      ? SPECIAL[Math.floor(r() * SPECIAL.length)]
      : (r() - 0.5) * (u < 0.3 ? 200 : 6);
  }
}

/** Runs `spec` both ways on fresh copies of `inputs`; returns both outputs. */
function runBoth(spec: MapSpec, inputs: Float32Array[], initOut: Float32Array) {
  const mem = new SharedMemory(1 << 20);
  const ptrs = inputs.map((d) => mem.alloc(d.byteLength + 16).ptr);
  const out = mem.alloc(initOut.byteLength + 16).ptr;
  const js = compileKernel(spec);
  const wasm = new WebAssembly.Instance(
    new WebAssembly.Module(buildMapModule(spec) as BufferSource),
    {
      env: { memory: mem.memory },
    },
  ).exports.k as (...p: number[]) => void;
  const results: Uint32Array[] = [];
  for (const way of ["js", "wasm"]) {
    const v = mem.views;
    inputs.forEach((d, k) => v.F.set(d, ptrs[k] >> 2));
    v.F.set(initOut, out >> 2);
    if (way === "js") js(v.F, v.I, v.U, Int32Array.from([...ptrs, out], (p) => p >> 2));
    else wasm(...ptrs, out);
    results.push(v.U.slice(out >> 2, (out >> 2) + initOut.length));
  }
  return results;
}

function sameBits(a: Uint32Array, b: Uint32Array, dtype: DType, what: string): void {
  const f = (u: Uint32Array) => new Float32Array(u.buffer);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    if (dtype === "f32" && Number.isNaN(f(a)[i]) && Number.isNaN(f(b)[i])) continue;
    assert.fail(
      `${what}: element ${i}: js ${dtype === "f32" ? f(a)[i] : a[i]} (0x${a[i].toString(16)}) vs ` +
        `wasm ${dtype === "f32" ? f(b)[i] : b[i]} (0x${b[i].toString(16)})`,
    );
  }
}

const UNARY: UnaryOp[] = [
  "neg",
  "exp",
  "log",
  "sqrt",
  "abs",
  "sign",
  "tanh",
  "sigmoid",
  "softplus",
  "relu",
  "recip",
  "square",
  "isnan",
  "isinf",
  "floor",
];
const BINARY: BinaryOp[] = [
  "add",
  "sub",
  "mul",
  "div",
  "maximum",
  "minimum",
  "eq",
  "ne",
  "lt",
  "le",
  "gt",
  "ge",
  "leaky_relu",
  "clamp_min",
  "clamp_max",
  "step",
];

function randomExpr(r: () => number, inputs: number, depth: number): Expr {
  if (depth === 0 || r() < 0.2) {
    return r() < 0.85 ? E.in(Math.floor(r() * inputs)) : E.const((r() - 0.5) * 4);
  }
  const u = r();
  if (u < 0.4) {
    return E.unary(UNARY[Math.floor(r() * UNARY.length)], randomExpr(r, inputs, depth - 1));
  }
  if (u < 0.9) {
    const op = BINARY[Math.floor(r() * BINARY.length)];
    return E.binary(op, randomExpr(r, inputs, depth - 1), randomExpr(r, inputs, depth - 1));
  }
  return E.where(
    randomExpr(r, inputs, depth - 1),
    randomExpr(r, inputs, depth - 1),
    randomExpr(r, inputs, depth - 1),
  );
}

/** Input layouts over an output shape: contiguous, broadcast (scalar, row, column) or permuted. */
function layouts(shape: number[]): { strides: number[]; size: number; offset: number }[] {
  const full = contiguousStrides(shape);
  const n = numel(shape);
  const out = [{ strides: full, size: n, offset: 0 }, {
    strides: shape.map(() => 0),
    size: 1,
    offset: 0,
  }];
  if (shape.length >= 2) {
    // broadcast over the first dim (a row vector), over the last (a column), and a transpose
    const rowSize = numel(shape.slice(1));
    out.push({ strides: [0, ...contiguousStrides(shape.slice(1))], size: rowSize, offset: 0 });
    const last = shape.length - 1;
    const col = shape.map((_, d) => (d === last ? 0 : contiguousStrides(shape.slice(0, last))[d]));
    out.push({ strides: col, size: numel(shape.slice(0, last)), offset: 0 });
    // A general strided view: element (i0, ..., i_last) at i_last * s0 + i0 (a transpose-like map).
    const tp = shape.map((
      _,
      d,
    ) => (d === 0 ? 1 : d === last ? shape[0] : shape[0] * shape[last] * d));
    const span = shape.reduce((acc, s, d) => acc + (s - 1) * tp[d], 0) + 1;
    out.push({ strides: tp, size: span, offset: 0 });
  }
  // an offset view (as a slice)
  out.push({ strides: full, size: n + 3, offset: 3 });
  return out;
}

Deno.test("cpu: WebAssembly maps equal the JavaScript maps bit for bit", () => {
  const r = rng(11);
  const shapes = [[1], [3], [4], [7], [2, 5], [3, 8], [4, 4, 3], [2, 3, 2, 5], [1, 9], [37]];
  let compared = 0;
  for (let trial = 0; trial < 300; trial++) {
    const shape = shapes[trial % shapes.length];
    const nIn = 1 + Math.floor(r() * 3);
    const opts = layouts(shape);
    const picks = Array.from({ length: nIn }, () => opts[Math.floor(r() * opts.length)]);
    const expr = randomExpr(r, nIn, 4);
    const useOut = trial % 7 === 0;
    const spec: MapSpec = {
      kind: "map",
      expr: useOut ? E.binary("add", E.out(), expr) : expr,
      shape,
      inputs: picks.map((p) => ({ dtype: "f32", strides: p.strides, offset: p.offset })),
      out: "f32",
    };
    if (!wasmMapSupported(spec)) continue;
    const data = picks.map((p) => {
      const d = new Float32Array(p.size);
      fill(d, r);
      return d;
    });
    const init = new Float32Array(numel(shape));
    fill(init, r);
    const [js, wasm] = runBoth(spec, data, init);
    sameBits(js, wasm, "f32", `trial ${trial} shape [${shape}] ${JSON.stringify(spec.expr)}`);
    compared++;
  }
  assert.ok(compared >= 280, `${compared} specs compared`);
});

Deno.test("cpu: integer maps and casts agree", () => {
  const r = rng(12);
  const ints = [0, 1, -1, 2147483647, -2147483648, 5, -7, 100];
  for (const to of ["i32", "u32"] as const) {
    for (let trial = 0; trial < 40; trial++) {
      const shape = [3, 5 + (trial % 4)];
      const n = numel(shape);
      const cmp: BinaryOp[] = ["add", "sub", "mul", "maximum", "minimum", "eq", "lt", "ge"];
      const op = cmp[trial % cmp.length];
      const x = E.cast(to, E.in(0));
      const spec: MapSpec = {
        kind: "map",
        expr: E.where(E.binary("gt", E.in(0), E.const(0)), E.binary(op, x, E.const(3, to)), x),
        shape,
        inputs: [{ dtype: "f32", strides: contiguousStrides(shape) }],
        out: to,
      };
      const d = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        d[i] = r() < 0.3 ? ints[Math.floor(r() * ints.length)] : (r() - 0.5) * 1e10;
      }
      const [js, wasm] = runBoth(spec, [d], new Float32Array(n));
      sameBits(js, wasm, to, `${to} ${op} trial ${trial}`);
      const back: MapSpec = {
        kind: "map",
        expr: E.cast("f32", E.in(0)),
        shape,
        inputs: [{ dtype: to, strides: contiguousStrides(shape) }],
        out: "f32",
      };
      const [j2, w2] = runBoth(back, [new Float32Array(js.buffer)], new Float32Array(n));
      sameBits(j2, w2, "f32", `${to} -> f32`);
    }
  }
});

Deno.test("cpu: f32 exp, log, tanh and sigmoid within 2 ulp (and their special values)", () => {
  const ulp = (x: number) => {
    const a = Math.abs(Math.fround(x));
    if (a === 0) return 2 ** -149;
    const e = Math.floor(Math.log2(a));
    return 2 ** Math.max(e - 23, -149);
  };
  const check = (
    name: string,
    f: (x: number) => number,
    ref: (x: number) => number,
    lo: number,
    hi: number,
  ) => {
    for (let i = 0; i <= 20000; i++) {
      const x = Math.fround(lo + ((hi - lo) * i) / 20000);
      const want = Math.fround(ref(x));
      const got = f(x);
      if (!Number.isFinite(want)) continue;
      const err = Math.abs(got - want) / ulp(want);
      if (err > 2 && Math.abs(got - want) > 1e-37) {
        assert.fail(`${name}(${x}) = ${got}, expected ${want} (${err.toFixed(1)} ulp)`);
      }
    }
  };
  check("exp", expf, Math.exp, -87, 88.3);
  check("log", logf, Math.log, 1e-37, 1e6);
  check("log", logf, Math.log, 0.5, 2);
  check("tanh", tanhf, Math.tanh, -12, 12);
  check("tanh", tanhf, Math.tanh, -0.7, 0.7);
  check("sigmoid", sigmoidf, (x) => 1 / (1 + Math.exp(-x)), -80, 80);
  assert.equal(expf(Infinity), Infinity);
  assert.equal(expf(-Infinity), 0);
  assert.ok(Number.isNaN(expf(NaN)));
  assert.equal(logf(0), -Infinity);
  assert.equal(logf(Infinity), Infinity);
  assert.ok(Number.isNaN(logf(-1)) && Number.isNaN(logf(NaN)));
  assert.equal(tanhf(Infinity), 1);
  assert.equal(tanhf(-Infinity), -1);
  assert.equal(sigmoidf(-Infinity), 0);
  assert.equal(sigmoidf(Infinity), 1);
});

/** Runs a two-buffer kernel spec in JavaScript and a WebAssembly module on the same data. */
function runPair(spec: KernelSpec, bytes: Uint8Array, input: Float32Array, outLen: number) {
  const mem = new SharedMemory(1 << 20);
  const src = mem.alloc(input.byteLength + 16).ptr;
  const dst = mem.alloc(outLen * 4 + 16).ptr;
  const js = compileKernel(spec);
  const k = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource), {
    env: { memory: mem.memory },
  }).exports.k as (a: number, b: number) => void;
  const out: Uint32Array[] = [];
  for (const way of ["js", "wasm"]) {
    const v = mem.views;
    v.F.set(input, src >> 2);
    v.F.fill(7, dst >> 2, (dst >> 2) + outLen);
    if (way === "js") js(v.F, v.I, v.U, Int32Array.from([src >> 2, dst >> 2]));
    else k(src, dst);
    out.push(v.U.slice(dst >> 2, (dst >> 2) + outLen));
  }
  return out;
}

Deno.test("cpu: WebAssembly im2col and col2im equal the JavaScript kernels bit for bit", () => {
  const r = rng(13);
  const geometries: ConvGeometry[] = [
    convGeometry([2, 3, 9, 9], 5, { stride: 2, padding: "same" }),
    convGeometry([2, 3, 9, 9], 3, { stride: 1, padding: 1 }),
    convGeometry([1, 2, 8, 11], [3, 2], { stride: [2, 3], padding: [1, 0], dilation: [1, 2] }),
    convGeometry([3, 1, 28, 28], 5, { stride: 2, padding: "same" }),
    convGeometry([2, 4, 14, 14], 5, { stride: 2, padding: "same" }),
    convGeometry([2, 2, 7, 7], 1, {}),
    convTransposeGeometry([2, 4, 7, 7], 3, 5, { stride: 2, padding: "same" }),
    convTransposeGeometry([1, 2, 5, 6], 2, 3, { stride: 1, padding: 0 }),
  ];
  for (const g of geometries) {
    const image = new Float32Array(g.n * g.c * g.h * g.w);
    fill(image, r);
    const cols = new Float32Array(colRows(g) * colCols(g));
    fill(cols, r);
    const [a, b] = runPair({ kind: "im2col", g }, buildIm2colModule(g), image, cols.length);
    sameBits(a, b, "f32", `im2col ${JSON.stringify(g)}`);
    const [c, d] = runPair({ kind: "col2im", g }, buildCol2imModule(g), cols, image.length);
    sameBits(c, d, "f32", `col2im ${JSON.stringify(g)}`);
  }
});

Deno.test("cpu: WebAssembly sum and max reductions (with prologues) match the JavaScript ones", () => {
  const r = rng(14);
  const cases: [number[], number[]][] = [
    [[5, 37], [1]],
    [[5, 37], [0]],
    [[3, 4, 9], [2]],
    [[3, 4, 9], [0, 2]],
    [[3, 4, 9], [0]],
    [[2, 3, 4, 5], [1, 3]],
    [[2, 3, 4, 5], [0, 1]],
    [[64], [0]],
    [[7, 1, 6], [0, 1]],
  ];
  let vectorized = 0;
  for (let trial = 0; trial < 120; trial++) {
    const [shape, axes] = cases[trial % cases.length];
    const op = trial % 3 === 0 ? "max" : "sum";
    const nIn = 1 + (trial % 2);
    const plain = () => ({ dtype: "f32" as DType, strides: contiguousStrides(shape) });
    const inputs = Array.from(
      { length: nIn },
      (_, k) =>
        k === 1 && trial % 4 === 1
          ? {
            dtype: "f32" as DType,
            strides: shape.map((_, d) => (d === 0 ? 0 : contiguousStrides(shape)[d])),
          }
          : plain(),
    );
    const expr = trial % 5 === 0 ? E.in(0) : randomExpr(r, nIn, 3);
    const spec: KernelSpec = { kind: "reduce", op, shape, axes, expr, inputs };
    const layout = wasmReducePlan(spec);
    if (!layout) continue;
    vectorized++;
    const data = inputs.map(() => {
      const d = new Float32Array(numel(shape));
      for (let i = 0; i < d.length; i++) d[i] = (r() - 0.5) * 4;
      if (trial % 11 === 0) d[Math.floor(r() * d.length)] = NaN;
      return d;
    });
    const outLen = numel(shape.filter((_, d) => !axes.includes(d)));
    const mem = new SharedMemory(1 << 20);
    const ptrs = data.map((d) => mem.alloc(d.byteLength + 16).ptr);
    const out = mem.alloc(outLen * 4 + 16).ptr;
    const v = mem.views;
    data.forEach((d, k) => v.F.set(d, ptrs[k] >> 2));
    compileKernel(spec)(v.F, v.I, v.U, Int32Array.from([...ptrs, out], (p) => p >> 2));
    const js = v.F.slice(out >> 2, (out >> 2) + outLen);
    v.F.fill(7, out >> 2, (out >> 2) + outLen);
    const k = new WebAssembly.Instance(
      new WebAssembly.Module(buildReduceModule(spec, layout) as BufferSource),
      { env: { memory: mem.memory } },
    ).exports.k as (...p: number[]) => void;
    k(...ptrs, out);
    const wasm = v.F.slice(out >> 2, (out >> 2) + outLen);
    for (let i = 0; i < outLen; i++) {
      const a = js[i], b = wasm[i];
      if (Number.isNaN(a) || Number.isNaN(b)) {
        assert.ok(
          Number.isNaN(a) && Number.isNaN(b),
          `trial ${trial} ${op} [${shape}] ${axes}: ${a} vs ${b}`,
        );
        continue;
      }
      const tol = op === "max" ? 0 : 1e-5 * (1 + Math.abs(a)) * numel(shape);
      assert.ok(
        a === b || Math.abs(a - b) <= tol,
        `trial ${trial} ${op} [${shape}] axes ${axes} (${layout.mode}) out ${i}: js ${a}, wasm ${b}`,
      );
    }
  }
  assert.ok(vectorized > 60, `${vectorized} reductions vectorized`);
});

Deno.test("cpu: the WebAssembly Adam update matches the JavaScript one", async () => {
  const { init, backend } = await import("../gpu/backend.ts");
  await init({ backend: "cpu" }).catch(() => null);
  if (backend().info.kind !== "cpu") return;
  const { FlatParams } = await import("../nn/module.ts");
  const { Adam } = await import("../nn/optim.ts");
  const { tensor } = await import("../tensor/functional.ts");
  const r = rng(15);
  for (const decoupled of [false, true]) {
    const n = 1003;
    const p0 = Float32Array.from({ length: n }, () => r() - 0.5);
    const gs = Array.from({ length: 3 }, () => Float32Array.from({ length: n }, () => r() - 0.5));
    const w = tensor(p0).requiresGrad_();
    const flat = new FlatParams([["w", w]]);
    const opt = new Adam(flat, { lr: 0.01, weightDecay: 0.1, decoupledWeightDecay: decoupled });
    // Reference in double, then rounded (the kernels compute in f32).
    const p = Float64Array.from(p0), m = new Float64Array(n), v = new Float64Array(n);
    for (let t = 1; t <= 3; t++) {
      backend().write(flat.grad.storageFor("t"), gs[t - 1], flat.grad.offset);
      opt.step();
      for (let i = 0; i < n; i++) {
        let g = gs[t - 1][i];
        if (!decoupled) g += 0.1 * p[i];
        m[i] = 0.9 * m[i] + 0.1 * g;
        v[i] = 0.999 * v[i] + 0.001 * g * g;
        const step = 0.01 / (1 - 0.9 ** t);
        const denom = Math.sqrt(v[i]) / Math.sqrt(1 - 0.999 ** t) + 1e-8;
        p[i] = (decoupled ? p[i] - 0.01 * 0.1 * p[i] : p[i]) - step * m[i] / denom;
      }
    }
    const got = await flat.data.data();
    for (let i = 0; i < n; i++) {
      assert.ok(
        Math.abs(got[i] - p[i]) < 2e-6,
        `decoupled=${decoupled} [${i}]: ${got[i]} vs ${p[i]}`,
      );
    }
    opt.dispose();
    flat.dispose();
  }
});

Deno.test("cpu: the WebAssembly LSTM step equals the JavaScript one bit for bit", () => {
  const r = rng(17);
  for (const backward of [false, true]) {
    for (const reverse of [false, true]) {
      for (const masked of [false, true]) {
        const s: LstmStepSpec = { backward, reverse, masked, b: 3, h: 8, steps: 4, slot: 64 };
        const stateLen = lstmActsOffset(s) + s.b * s.steps * 4 * s.h;
        const bh = s.b * s.h;
        // Buffers in the spec's order; the step buffer holds t = 2.
        const lens = backward
          ? [
            stateLen,
            ...(masked ? [s.b * s.steps] : []),
            1,
            (s.steps + 1) * 2 * s.slot,
            bh,
            6 * bh,
            s.b * s.steps * 4 * s.h,
            6 * bh,
          ]
          : [
            s.b * s.steps * 4 * s.h,
            s.b * 4 * s.h,
            ...(masked ? [s.b * s.steps] : []),
            1,
            stateLen,
          ];
        const stepAt = backward ? 1 + (masked ? 1 : 0) : 2 + (masked ? 1 : 0);
        const maskAt = masked ? (backward ? 1 : 2) : -1;
        const data = lens.map((n, k) => {
          const d = new Float32Array(n);
          if (k === stepAt) new Int32Array(d.buffer)[0] = 2;
          else if (k === maskAt) d.forEach((_, q) => (d[q] = r() < 0.3 ? 0 : 1));
          else fill(d, r);
          // Activations are in (0, 1) or (-1, 1) as the forward pass leaves them.
          if (k === 0 && backward) {
            for (let q = lstmActsOffset(s); q < n; q++) d[q] = r() * 1.8 - 0.9;
          }
          return d;
        });
        const mem = new SharedMemory(1 << 20);
        const ptrs = data.map((d) => mem.alloc(d.byteLength + 16).ptr);
        const js = compileKernel({ kind: "lstmStep", ...s });
        const wasm = new WebAssembly.Instance(
          new WebAssembly.Module(buildLstmStepModule(s) as BufferSource),
          { env: { memory: mem.memory } },
        ).exports.k as (...p: number[]) => void;
        const results: Uint32Array[][] = [];
        for (const way of ["js", "wasm"]) {
          const v = mem.views;
          data.forEach((d, k) => v.F.set(d, ptrs[k] >> 2));
          if (way === "js") js(v.F, v.I, v.U, Int32Array.from(ptrs, (p) => p >> 2));
          else wasm(...ptrs);
          results.push(ptrs.map((p, k) => v.U.slice(p >> 2, (p >> 2) + data[k].length)));
        }
        const what = `lstmStep ${JSON.stringify({ backward, reverse, masked })}`;
        results[0].forEach((a, k) => sameBits(a, results[1][k], "f32", `${what} buffer ${k}`));
      }
    }
  }
});
