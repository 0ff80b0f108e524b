/**
 * Elementwise kernels in WebAssembly SIMD: a map spec (an expression tree over strided inputs,
 * gpu/kernel.ts) becomes one exported function `k(ptr_0, ..., ptr_out)` of byte addresses, with
 * the shape and strides baked in. The output is written four elements at a time; each input is
 * read as a vector (contiguous along the innermost dimension), a splat (broadcast along it) or a
 * gather (any other stride). The innermost dimension's remainder (size mod 4) is computed with
 * the same vector code on lanes loaded one by one, and stored lane by lane.
 *
 * Every op has the semantics of the JavaScript rendering in gpu/cpu/codegen.ts, bit for bit
 * (f32 rounding per op; exp/log/tanh/sigmoid from gpu/cpu/mathf.ts); {@link wasmMapSupported}
 * says which expressions this file renders (sin, cos and pow stay in JavaScript).
 * @module
 */

import {
  type BinaryOp,
  type DType,
  type Expr,
  exprNodes,
  exprType,
  inputKinds,
  isUnary,
  type KernelSpec,
  lowerExpr,
  numel,
} from "../kernel.ts";
import { ConstPool, emitExp, emitLog, emitSigmoid, emitTanh, SIMD, simd } from "./mathf.ts";
import { type FunctionBuilder, ModuleBuilder } from "./wasm_builder.ts";

type MapSpec = Extract<KernelSpec, { kind: "map" }>;

const UNSUPPORTED = new Set(["sin", "cos", "pow"]);

/** Whether {@link buildMapModule} renders `spec` (else the JavaScript kernel runs). */
export function wasmMapSupported(spec: MapSpec): boolean {
  return numel(spec.shape) > 0 && !spec.outOffset &&
    !exprNodes(spec.expr).some((e) => UNSUPPORTED.has(e.op));
}

const ONE_F = 0x3f800000;

/** Leaves 1 or 0 (in `t`'s representation) for the mask on the stack. */
function maskToOne(f: FunctionBuilder, c: ConstPool, t: DType): void {
  c.bits(t === "f32" ? ONE_F : 1);
  simd(f, SIMD.and);
}

/**
 * Emits the vector evaluation of `expr`: one v128 local per node, constants from `c`; `load(k)`
 * pushes input k's vector, `out()` the output's current vector. Returns the local holding the
 * result.
 */
export function emitExpr(
  f: FunctionBuilder,
  c: ConstPool,
  expr: Expr,
  types: readonly DType[],
  outType: DType,
  load: (k: number) => void,
  out: () => void,
): number {
  const locals = new Map<Expr, number>();
  const inputs = new Map<number, number>();
  const type = (e: Expr) => exprType(e, types, outType);
  expr = lowerExpr(expr);
  for (const node of exprNodes(expr)) {
    if (node.op === "in" && inputs.has(node.i)) {
      locals.set(node, inputs.get(node.i)!);
      continue;
    }
    const get = (e: Expr) => f.localGet(locals.get(e)!);
    if (node.op === "in") load(node.i);
    else if (node.op === "out") out();
    else if (node.op === "const") {
      if (node.dtype === "f32") c.f32(node.value);
      else c.bits(node.dtype === "i32" ? node.value | 0 : node.value >>> 0);
    } else if (node.op === "cast") {
      const from = type(node.a);
      get(node.a);
      if (from === "f32" && node.to === "i32") simd(f, SIMD.i32x4TruncSatF32S);
      else if (from === "f32" && node.to === "u32") simd(f, SIMD.i32x4TruncSatF32U);
      else if (from === "i32" && node.to === "f32") simd(f, SIMD.f32x4ConvertI32S);
      else if (from === "u32" && node.to === "f32") simd(f, SIMD.f32x4ConvertI32U);
      // i32 <-> u32 and same-type casts keep the bits.
    } else if (node.op === "where") {
      get(node.a);
      get(node.b);
      get(node.c);
      c.bits(0);
      simd(f, type(node.c) === "f32" ? SIMD.f32x4Ne : SIMD.i32x4Ne);
      simd(f, SIMD.bitselect);
    } else if (isUnary(node)) {
      unary(f, c, node.op, locals.get(node.a)!);
    } else {
      const b = node as { op: BinaryOp; a: Expr; b: Expr };
      binary(f, c, b.op, () => get(b.a), () => get(b.b), type(b.a));
    }
    const local = f.local("v128");
    f.localSet(local);
    locals.set(node, local);
    if (node.op === "in") inputs.set(node.i, local);
  }
  return locals.get(expr)!;
}

function unary(f: FunctionBuilder, c: ConstPool, op: string, x: number): void {
  const a = () => f.localGet(x);
  switch (op) {
    case "neg":
      a();
      simd(f, SIMD.f32x4Neg);
      return;
    case "abs":
      a();
      simd(f, SIMD.f32x4Abs);
      return;
    case "sqrt":
      a();
      simd(f, SIMD.f32x4Sqrt);
      return;
    case "floor":
      a();
      simd(f, SIMD.f32x4Floor);
      return;
    case "square":
      a();
      a();
      simd(f, SIMD.f32x4Mul);
      return;
    case "recip":
      c.f32(1);
      a();
      simd(f, SIMD.f32x4Div);
      return;
    case "sign":
      // (x > 0) - (x < 0): 0 for zeros and NaN
      a();
      c.f32(0);
      simd(f, SIMD.f32x4Gt);
      maskToOne(f, c, "f32");
      a();
      c.f32(0);
      simd(f, SIMD.f32x4Lt);
      maskToOne(f, c, "f32");
      simd(f, SIMD.f32x4Sub);
      return;
    case "relu":
      // x < 0 ? 0 : x
      c.f32(0);
      a();
      a();
      c.f32(0);
      simd(f, SIMD.f32x4Lt);
      simd(f, SIMD.bitselect);
      return;
    case "isnan":
      a();
      a();
      simd(f, SIMD.f32x4Ne);
      maskToOne(f, c, "f32");
      return;
    case "isinf":
      a();
      simd(f, SIMD.f32x4Abs);
      c.bits(0x7f800000);
      simd(f, SIMD.f32x4Eq);
      maskToOne(f, c, "f32");
      return;
    case "exp":
      emitExp(f, c, x);
      return;
    case "log":
      emitLog(f, c, x);
      return;
    case "tanh":
      emitTanh(f, c, x);
      return;
    case "sigmoid":
      emitSigmoid(f, c, x);
      return;
  }
  throw new Error(`wasm map: no rendering of '${op}'`);
}

const F_CMP: Partial<Record<BinaryOp, number>> = {
  eq: SIMD.f32x4Eq,
  ne: SIMD.f32x4Ne,
  lt: SIMD.f32x4Lt,
  le: SIMD.f32x4Le,
  gt: SIMD.f32x4Gt,
  ge: SIMD.f32x4Ge,
};
const I_CMP: Partial<Record<BinaryOp, [number, number]>> = {
  eq: [SIMD.i32x4Eq, SIMD.i32x4Eq],
  ne: [SIMD.i32x4Ne, SIMD.i32x4Ne],
  lt: [SIMD.i32x4LtS, SIMD.i32x4LtU],
  le: [SIMD.i32x4LeS, SIMD.i32x4LeU],
  gt: [SIMD.i32x4GtS, SIMD.i32x4GtU],
  ge: [SIMD.i32x4GeS, SIMD.i32x4GeU],
};

function binary(
  f: FunctionBuilder,
  c: ConstPool,
  op: BinaryOp,
  a: () => void,
  b: () => void,
  t: DType,
): void {
  const u = t === "u32" ? 1 : 0;
  if (t !== "f32") {
    const cmp = I_CMP[op];
    if (cmp) {
      a();
      b();
      simd(f, cmp[u]);
      maskToOne(f, c, t);
      return;
    }
    const ops: Partial<Record<BinaryOp, number>> = {
      add: SIMD.i32x4Add,
      sub: SIMD.i32x4Sub,
      mul: SIMD.i32x4Mul,
      maximum: u ? SIMD.i32x4MaxU : SIMD.i32x4MaxS,
      minimum: u ? SIMD.i32x4MinU : SIMD.i32x4MinS,
    };
    const code = ops[op];
    if (code === undefined) throw new Error(`wasm map: no integer rendering of '${op}'`);
    a();
    b();
    simd(f, code);
    return;
  }
  const cmp = F_CMP[op];
  if (cmp !== undefined) {
    a();
    b();
    simd(f, cmp);
    maskToOne(f, c, "f32");
    return;
  }
  switch (op) {
    case "add":
    case "sub":
    case "mul":
    case "div":
      a();
      b();
      simd(
        f,
        { add: SIMD.f32x4Add, sub: SIMD.f32x4Sub, mul: SIMD.f32x4Mul, div: SIMD.f32x4Div }[op],
      );
      return;
    case "maximum":
    case "minimum":
      // x where (x >= y (or <=) or x is NaN), else y: NaN-propagating, first operand on ties
      a();
      b();
      a();
      b();
      simd(f, op === "maximum" ? SIMD.f32x4Ge : SIMD.f32x4Le);
      a();
      a();
      simd(f, SIMD.f32x4Ne);
      simd(f, SIMD.or);
      simd(f, SIMD.bitselect);
      return;
    case "leaky_relu":
      // x < 0 ? x * s : x
      a();
      b();
      simd(f, SIMD.f32x4Mul);
      a();
      a();
      c.f32(0);
      simd(f, SIMD.f32x4Lt);
      simd(f, SIMD.bitselect);
      return;
    case "clamp_min":
    case "clamp_max":
      // x < lo ? lo : x (x > hi ? hi : x)
      b();
      a();
      a();
      b();
      simd(f, op === "clamp_min" ? SIMD.f32x4Lt : SIMD.f32x4Gt);
      simd(f, SIMD.bitselect);
      return;
    case "step":
      a();
      b();
      simd(f, SIMD.f32x4Gt);
      maskToOne(f, c, "f32");
      return;
  }
  throw new Error(`wasm map: no rendering of '${op}'`);
}

/** Loads a 32-bit element at local `ptr` + `offset` bytes (as f32 or i32). */
function loadScalar(f: FunctionBuilder, ptr: number, offset: number, t: DType): void {
  f.localGet(ptr);
  if (t === "f32") f.f32Load({ offset, align: 2 });
  else f.i32Load({ offset, align: 2 });
}

/**
 * Builds the module of `spec`: `k(p_0, ..., p_out)`, each p a byte address (the binding's start;
 * the element offsets of the spec are added inside).
 */
export function buildMapModule(spec: MapSpec): Uint8Array {
  const c = inputKinds(spec.shape, spec.inputs);
  const dims = c.shape.length ? c.shape : [1];
  const D = dims.length;
  const strides = spec.inputs.map((_, k) => (c.strides[k].length ? c.strides[k] : [0]));
  const types = spec.inputs.map((i) => i.dtype);
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  const nIn = spec.inputs.length;
  const params = new Array(nIn + 1).fill("i32");
  mb.addFunction("k", params, [], (f) => {
    const c = new ConstPool(f);
    const outPtr = nIn;
    // Per input and loop level, a running byte pointer (level 0 starts at the parameter).
    const ptr = spec.inputs.map(() => dims.map(() => f.local("i32")));
    const counters = dims.map(() => f.local("i32"));
    const splat = spec.inputs.map(() => f.local("v128"));
    const L = dims[D - 1];
    const inner = strides.map((s) => s[D - 1]);
    const V = Math.floor(L / 4);
    const R = L % 4;
    spec.inputs.forEach((inp, k) => {
      f.localGet(k);
      if (inp.offset) f.i32Const(inp.offset * 4).i32Add();
      f.localSet(ptr[k][0]);
    });
    const loadVector = (k: number) => {
      const p = ptr[k][D - 1];
      if (inner[k] === 1) {
        f.localGet(p);
        simd(f, SIMD.load).raw(4, 0);
      } else if (inner[k] === 0) f.localGet(splat[k]);
      else {
        loadScalar(f, p, 0, types[k]);
        simd(f, types[k] === "f32" ? SIMD.f32x4Splat : SIMD.i32x4Splat);
        for (let l = 1; l < 4; l++) {
          loadScalar(f, p, 4 * l * inner[k], types[k]);
          simd(f, types[k] === "f32" ? SIMD.f32x4Replace : SIMD.i32x4Replace).raw(l);
        }
      }
    };
    const loadLanes = (p: number, step: number, t: DType, lanes: number) => {
      c.bits(0);
      for (let l = 0; l < lanes; l++) {
        loadScalar(f, p, 4 * l * step, t);
        simd(f, t === "f32" ? SIMD.f32x4Replace : SIMD.i32x4Replace).raw(l);
      }
    };
    const body = (level: number) => {
      if (level < D - 1) {
        const n = dims[level];
        f.i32Const(0).localSet(counters[level]);
        f.loop((top) => {
          spec.inputs.forEach((_, k) => f.localGet(ptr[k][level]).localSet(ptr[k][level + 1]));
          body(level + 1);
          spec.inputs.forEach((_, k) => {
            const st = strides[k][level];
            if (st) f.localGet(ptr[k][level]).i32Const(4 * st).i32Add().localSet(ptr[k][level]);
          });
          f.localGet(counters[level]).i32Const(1).i32Add().localTee(counters[level]);
          f.i32Const(n).i32LtU().brIf(top);
        });
        return;
      }
      // Innermost dimension: broadcast inputs are splat once per row.
      spec.inputs.forEach((_, k) => {
        if (inner[k] === 0) {
          f.localGet(ptr[k][D - 1]);
          simd(f, SIMD.load32Splat).raw(2, 0);
          f.localSet(splat[k]);
        }
      });
      if (V > 0) {
        f.i32Const(0).localSet(counters[D - 1]);
        f.loop((top) => {
          const r = emitExpr(f, c, spec.expr, types, spec.out, loadVector, () => {
            f.localGet(outPtr);
            simd(f, SIMD.load).raw(4, 0);
          });
          f.localGet(outPtr).localGet(r);
          simd(f, SIMD.store).raw(4, 0);
          f.localGet(outPtr).i32Const(16).i32Add().localSet(outPtr);
          spec.inputs.forEach((_, k) => {
            if (inner[k] !== 0) {
              const p = ptr[k][D - 1];
              f.localGet(p).i32Const(16 * inner[k]).i32Add().localSet(p);
            }
          });
          f.localGet(counters[D - 1]).i32Const(1).i32Add().localTee(counters[D - 1]);
          f.i32Const(V).i32LtU().brIf(top);
        });
      }
      if (R > 0) {
        const r = emitExpr(
          f,
          c,
          spec.expr,
          types,
          spec.out,
          (
            k,
          ) => (inner[k] === 0
            ? f.localGet(splat[k])
            : loadLanes(ptr[k][D - 1], inner[k], types[k], R)),
          () => loadLanes(outPtr, 1, spec.out, R),
        );
        for (let l = 0; l < R; l++) {
          f.localGet(outPtr).localGet(r);
          if (spec.out === "f32") {
            simd(f, SIMD.f32x4Extract).raw(l);
            f.f32Store({ offset: 4 * l, align: 2 });
          } else {
            simd(f, SIMD.i32x4Extract).raw(l);
            f.i32Store({ offset: 4 * l, align: 2 });
          }
        }
        f.localGet(outPtr).i32Const(4 * R).i32Add().localSet(outPtr);
      }
    };
    body(0);
    c.finish();
  });
  return mb.build();
}
