/**
 * Sum and max reductions in WebAssembly SIMD for the CPU backend, with the fused elementwise
 * prologue of the reduce spec (gpu/kernel.ts) evaluated by the vector code of gpu/cpu/wasm_map.ts.
 * Two layouts are vectorized:
 *
 * - the innermost dimension is reduced and read contiguously (or broadcast) by every input: four
 *   partial results per output, combined at the end (`(l0 + l1) + (l2 + l3)` for sums);
 * - the innermost dimension is kept and contiguous: four adjacent outputs at once, each reduced
 *   in order over the reduced dimensions.
 *
 * Sums accumulate in f32 (as the WebGPU kernels; the JavaScript fallback accumulates in double).
 * Max propagates NaN (the first NaN met wins, as everywhere). Anything else (argmax, other
 * layouts, sin/cos/pow prologues) stays in JavaScript: {@link wasmReducePlan} returns null.
 * @module
 */

import { type DType, type KernelSpec, planReduce } from "../kernel.ts";
import { ConstPool, SIMD, simd } from "./mathf.ts";
import { emitExpr, wasmMapSupported } from "./wasm_map.ts";
import { type FunctionBuilder, ModuleBuilder } from "./wasm_builder.ts";

type ReduceSpec = Extract<KernelSpec, { kind: "reduce" }>;

/** Vectors of outputs reduced together in the "outputs" layout. */
const BLOCK = 8;

/** How a reduction is vectorized. */
export interface ReduceLayout {
  /** "inner": the innermost dim is reduced; "outputs": it is kept (4 outputs at once). */
  mode: "inner" | "outputs";
  keepShape: number[];
  keepStrides: number[][];
  redShape: number[];
  redStrides: number[][];
}

/** The vectorized layout of `spec`, or null when it stays in JavaScript. */
export function wasmReducePlan(spec: ReduceSpec): ReduceLayout | null {
  if (spec.op === "argmax") return null;
  const asMap: Extract<KernelSpec, { kind: "map" }> = {
    kind: "map",
    expr: spec.expr,
    shape: spec.shape,
    inputs: spec.inputs,
    out: "f32",
  };
  if (!wasmMapSupported(asMap)) return null;
  const p = planReduce(spec.shape, spec.axes, spec.inputs.map((i) => i.strides));
  if (p.redShape.length === 0 || p.keepShape.reduce((a, b) => a * b, 1) === 0) return null;
  // Which dimension is innermost: the last one of the shape that is not 1.
  let last = spec.shape.length - 1;
  while (last >= 0 && spec.shape[last] === 1) last--;
  const innerReduced = spec.axes.includes(last);
  const unit = (strides: number[][]) =>
    strides.every((st) => st[st.length - 1] === 0 || st[st.length - 1] === 1);
  if (innerReduced && unit(p.redStrides)) return { mode: "inner", ...p };
  if (!innerReduced && p.keepShape.length && unit(p.keepStrides)) return { mode: "outputs", ...p };
  return null;
}

/** Nested loops over `shape` advancing per-input byte pointers `ptrs[k][level]`. */
function loops(
  f: FunctionBuilder,
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  ptrs: number[][],
  counters: number[],
  depth: number,
  body: () => void,
): void {
  const level = (d: number) => {
    if (d === depth) {
      body();
      return;
    }
    f.i32Const(0).localSet(counters[d]);
    f.loop((top) => {
      ptrs.forEach((p) => f.localGet(p[d]).localSet(p[d + 1]));
      level(d + 1);
      ptrs.forEach((p, k) => {
        const st = strides[k][d];
        if (st) f.localGet(p[d]).i32Const(4 * st).i32Add().localSet(p[d]);
      });
      f.localGet(counters[d]).i32Const(1).i32Add().localTee(counters[d]);
      f.i32Const(shape[d]).i32LtU().brIf(top);
    });
  };
  level(0);
}

/** Loads 32-bit element `lane` (offset bytes) from local `p` into lane `lane` of the stack top. */
function replaceLane(f: FunctionBuilder, p: number, offset: number, t: DType, lane: number) {
  f.localGet(p);
  if (t === "f32") f.f32Load({ offset, align: 2 });
  else f.i32Load({ offset, align: 2 });
  simd(f, t === "f32" ? SIMD.f32x4Replace : SIMD.i32x4Replace).raw(lane);
}

/** `acc = combine(acc, v)` for the op, on v128 locals. */
function combine(f: FunctionBuilder, op: "sum" | "max", acc: number, v: number): void {
  if (op === "sum") {
    f.localGet(acc).localGet(v);
    simd(f, SIMD.f32x4Add);
  } else {
    // acc === acc && (v !== v || v > acc) ? v : acc
    f.localGet(v).localGet(acc);
    f.localGet(acc).localGet(acc);
    simd(f, SIMD.f32x4Eq);
    f.localGet(v).localGet(v);
    simd(f, SIMD.f32x4Ne);
    f.localGet(v).localGet(acc);
    simd(f, SIMD.f32x4Gt);
    simd(f, SIMD.or);
    simd(f, SIMD.and);
    simd(f, SIMD.bitselect);
  }
  f.localSet(acc);
}

/** Module of `spec` (see {@link wasmReducePlan}): `k(p_0, ..., p_out)`. */
export function buildReduceModule(spec: ReduceSpec, layout: ReduceLayout): Uint8Array {
  const op = spec.op as "sum" | "max";
  const nIn = spec.inputs.length;
  const types = spec.inputs.map((i) => i.dtype);
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  mb.addFunction("k", new Array(nIn + 1).fill("i32"), [], (f) => {
    const c = new ConstPool(f);
    const init = () => (op === "sum" ? c.f32(0) : c.bits(0xff800000 | 0));
    const outPtr = nIn;
    const K = layout.keepShape.length, R = layout.redShape.length;
    // Pointers: keep levels 0..K, then reduce levels K..K+R (the keep pointer starts them).
    const ptrs = spec.inputs.map(() => Array.from({ length: K + R + 1 }, () => f.local("i32")));
    const counters = Array.from({ length: K + R }, () => f.local("i32"));
    const acc = f.local("v128"), v = f.local("v128"), tmp = f.local("v128");
    spec.inputs.forEach((inp, k) => {
      f.localGet(k);
      if (inp.offset) f.i32Const(inp.offset * 4).i32Add();
      f.localSet(ptrs[k][0]);
    });
    const redPtrs = ptrs.map((p) => p.slice(K));
    const redCounters = counters.slice(K);
    const value = (load: (k: number) => void) => {
      const r = emitExpr(f, c, spec.expr, types, "f32", load, () => c.f32(0));
      f.localGet(r).localSet(v);
    };
    const vectorLoad = (k: number, level: number, inner: number, offset = 0) => {
      f.localGet(ptrs[k][level]);
      if (inner === 1) simd(f, SIMD.load).raw(4, offset);
      else simd(f, SIMD.load32Splat).raw(2, 0);
    };
    const laneLoad = (k: number, level: number, inner: number, lanes: number) => {
      c.bits(0);
      for (let l = 0; l < lanes; l++) replaceLane(f, ptrs[k][level], 4 * l * inner, types[k], l);
    };
    const identity = (lanesValid: number) => {
      // v = lanes >= lanesValid ? identity : v
      init();
      f.localGet(v);
      const mask = [0, 1, 2, 3].map((l) => (l < lanesValid ? 0 : -1));
      simd(f, SIMD.const);
      for (const b of new Uint8Array(new Int32Array(mask).buffer)) f.raw(b);
      simd(f, SIMD.bitselect);
      f.localSet(v);
    };
    const storeLane = (l: number) => {
      f.localGet(outPtr).localGet(acc);
      simd(f, SIMD.f32x4Extract).raw(l);
      f.f32Store({ offset: 4 * l, align: 2 });
    };

    if (layout.mode === "inner") {
      const L = layout.redShape[R - 1];
      const inner = layout.redStrides.map((st) => st[R - 1]);
      const V = Math.floor(L / 4), T = L % 4;
      loops(f, layout.keepShape, layout.keepStrides, ptrs, counters, K, () => {
        init();
        f.localSet(acc);
        loops(f, layout.redShape, layout.redStrides, redPtrs, redCounters, R - 1, () => {
          const lv = K + R - 1;
          if (V > 0) {
            f.i32Const(0).localSet(counters[lv]);
            f.loop((top) => {
              value((k) => vectorLoad(k, lv, inner[k]));
              combine(f, op, acc, v);
              spec.inputs.forEach((_, k) => {
                if (inner[k]) f.localGet(ptrs[k][lv]).i32Const(16).i32Add().localSet(ptrs[k][lv]);
              });
              f.localGet(counters[lv]).i32Const(1).i32Add().localTee(counters[lv]);
              f.i32Const(V).i32LtU().brIf(top);
            });
          }
          if (T > 0) {
            value((k) => laneLoad(k, lv, inner[k], T));
            identity(T);
            combine(f, op, acc, v);
          }
        });
        // Horizontal: sum (l0 + l1) + (l2 + l3); max folds lanes in order with the NaN rule.
        if (op === "sum") {
          f.localGet(outPtr);
          f.localGet(acc);
          simd(f, SIMD.f32x4Extract).raw(0);
          f.localGet(acc);
          simd(f, SIMD.f32x4Extract).raw(1);
          f.f32Add();
          f.localGet(acc);
          simd(f, SIMD.f32x4Extract).raw(2);
          f.localGet(acc);
          simd(f, SIMD.f32x4Extract).raw(3);
          f.f32Add();
          f.f32Add();
          f.f32Store({ align: 2 });
        } else {
          // tmp = acc lane 0 splat; then combine with each of lanes 1..3 splat.
          for (let l = 0; l < 4; l++) {
            f.localGet(acc);
            simd(f, SIMD.f32x4Extract).raw(l);
            simd(f, SIMD.f32x4Splat);
            if (l === 0) f.localSet(tmp);
            else {
              f.localSet(v);
              combine(f, op, tmp, v);
            }
          }
          f.localGet(outPtr).localGet(tmp);
          simd(f, SIMD.f32x4Extract).raw(0);
          f.f32Store({ align: 2 });
        }
        f.localGet(outPtr).i32Const(4).i32Add().localSet(outPtr);
      });
      c.finish();
      return;
    }

    // "outputs": the innermost kept dim in blocks of up to BLOCK vectors (each reduced row is
    // then read in runs of 16 * BLOCK bytes), then single vectors, then the remaining lanes.
    const L = layout.keepShape[K - 1];
    const inner = layout.keepStrides.map((st) => st[K - 1]);
    const B = Math.min(BLOCK, Math.floor(L / 4));
    const blocks = B > 1 ? Math.floor(L / 4 / B) : 0;
    const V = Math.floor(L / 4) - blocks * B, T = L % 4;
    const accs = Array.from({ length: B }, () => f.local("v128"));
    const reduceBlock = () => {
      for (const a of accs) {
        init();
        f.localSet(a);
      }
      ptrs.forEach((p) => f.localGet(p[K - 1]).localSet(p[K]));
      loops(f, layout.redShape, layout.redStrides, redPtrs, redCounters, R, () => {
        accs.forEach((a, b) => {
          value((k) => vectorLoad(k, K + R, inner[k], 16 * b));
          combine(f, op, a, v);
        });
      });
    };
    const reduceAll = (load: (k: number) => void) => {
      init();
      f.localSet(acc);
      // The reduction starts at the current keep pointers.
      ptrs.forEach((p) => f.localGet(p[K - 1]).localSet(p[K]));
      loops(f, layout.redShape, layout.redStrides, redPtrs, redCounters, R, () => {
        value(load);
        combine(f, op, acc, v);
      });
    };
    loops(f, layout.keepShape, layout.keepStrides, ptrs, counters, K - 1, () => {
      const lv = K - 1;
      if (blocks > 0) {
        f.i32Const(0).localSet(counters[lv]);
        f.loop((top) => {
          reduceBlock();
          accs.forEach((a, b) => {
            f.localGet(outPtr).localGet(a);
            simd(f, SIMD.store).raw(4, 16 * b);
          });
          f.localGet(outPtr).i32Const(16 * B).i32Add().localSet(outPtr);
          spec.inputs.forEach((_, k) => {
            if (inner[k]) {
              f.localGet(ptrs[k][lv]).i32Const(16 * B).i32Add().localSet(ptrs[k][lv]);
            }
          });
          f.localGet(counters[lv]).i32Const(1).i32Add().localTee(counters[lv]);
          f.i32Const(blocks).i32LtU().brIf(top);
        });
      }
      if (V > 0) {
        f.i32Const(0).localSet(counters[lv]);
        f.loop((top) => {
          reduceAll((k) => vectorLoad(k, K + R, inner[k]));
          f.localGet(outPtr).localGet(acc);
          simd(f, SIMD.store).raw(4, 0);
          f.localGet(outPtr).i32Const(16).i32Add().localSet(outPtr);
          spec.inputs.forEach((_, k) => {
            if (inner[k]) f.localGet(ptrs[k][lv]).i32Const(16).i32Add().localSet(ptrs[k][lv]);
          });
          f.localGet(counters[lv]).i32Const(1).i32Add().localTee(counters[lv]);
          f.i32Const(V).i32LtU().brIf(top);
        });
      }
      if (T > 0) {
        reduceAll((k) => laneLoad(k, K + R, inner[k], T));
        for (let l = 0; l < T; l++) storeLane(l);
        f.localGet(outPtr).i32Const(4 * T).i32Add().localSet(outPtr);
      }
    });
    c.finish();
  });
  return mb.build();
}
