/**
 * f32 exp, log, tanh and sigmoid for the CPU backend, each written ONCE as a sequence of f32
 * operations (Cephes' single-precision polynomials: S. Moshier, "Methods and Programs for
 * Mathematical Functions"), and rendered twice from that sequence: as scalar JavaScript (every
 * op rounded with `Math.fround`) and as WebAssembly SIMD (four lanes at a time). Both renderings
 * give the same bits for the same input, so a kernel may run either way (a fused expression in
 * WebAssembly, the same op alone in JavaScript) without changing results.
 *
 * Accuracy: within 2 ulp of the correctly rounded result on normal inputs. Limits: exp clamps
 * its argument to [-87.34, 88.38] (results below 2^-126 flush to 0, and x in (88.38, 88.72]
 * gives 2.4e38 instead of up to 3.4e38; beyond 88.72 it is +inf); log flushes subnormal inputs to
 * -inf. NaN propagates through all four.
 * @module
 */

import { type FunctionBuilder, uleb } from "./wasm_builder.ts";

const fr = Math.fround;

/** exp's argument range and constants. */
const EXP = {
  lo: fr(-87.3365478515625),
  hi: fr(88.3762626647949),
  overflow: fr(88.72283935546875),
  log2e: fr(1.44269504088896341),
  c1: fr(0.693359375),
  c2: fr(-2.12194440e-4),
  p: [
    1.9875691500E-4,
    1.3981999507E-3,
    8.3334519073E-3,
    4.1665795894E-2,
    1.6666665459E-1,
    5.0000001201E-1,
  ]
    .map(fr),
};

/** log's constants. */
const LOG = {
  sqrthf: fr(0.707106781186547524),
  p: [
    7.0376836292E-2,
    -1.1514610310E-1,
    1.1676998740E-1,
    -1.2420140846E-1,
    1.4249322787E-1,
    -1.6668057665E-1,
    2.0000714765E-1,
    -2.4999993993E-1,
    3.3333331174E-1,
  ].map(fr),
  q1: fr(-2.12194440e-4),
  q2: fr(0.693359375),
};

/** tanh's polynomial (|x| <= 0.625). */
const TANH = {
  p: [-5.70498872745E-3, 2.06390887954E-2, -5.37397155531E-2, 1.33314422036E-1, -3.33332819422E-1]
    .map(fr),
};

const bitsF = new Float32Array(1);
const bitsI = new Int32Array(bitsF.buffer);

/** f32 exp (see the module doc). */
export function expf(x: number): number {
  const xc = Math.min(Math.max(x, EXP.lo), EXP.hi);
  const fx = Math.floor(fr(fr(xc * EXP.log2e) + 0.5));
  let r = fr(xc - fr(fx * EXP.c1));
  r = fr(r - fr(fx * EXP.c2));
  const z = fr(r * r);
  let y = EXP.p[0];
  for (let i = 1; i < EXP.p.length; i++) y = fr(fr(y * r) + EXP.p[i]);
  y = fr(fr(fr(y * z) + r) + 1);
  const res = fr(y * 2 ** (fx !== fx ? 0 : fx));
  return x > EXP.overflow ? Infinity : x < EXP.lo ? 0 : res;
}

/** f32 natural log (see the module doc). */
export function logf(x: number): number {
  if (x !== x || x < 0) return NaN;
  if (x === Infinity) return Infinity;
  bitsF[0] = x;
  const bits = bitsI[0];
  if ((bits & 0x7f800000) === 0) return -Infinity;
  let e = (bits >> 23) - 126;
  bitsI[0] = (bits & 0x807fffff) | 0x3f000000;
  let m = bitsF[0];
  if (m < LOG.sqrthf) {
    e -= 1;
    m = fr(fr(m + m) - 1);
  } else m = fr(m - 1);
  const z = fr(m * m);
  let y = LOG.p[0];
  for (let i = 1; i < LOG.p.length; i++) y = fr(fr(y * m) + LOG.p[i]);
  y = fr(fr(y * m) * z);
  const fe = fr(e);
  y = fr(y + fr(fe * LOG.q1));
  y = fr(y - fr(0.5 * z));
  return fr(fr(m + y) + fr(fe * LOG.q2));
}

/** f32 tanh (see the module doc). */
export function tanhf(x: number): number {
  const a = Math.abs(x);
  if (a > 0.625) {
    const t = fr(1 - fr(2 / fr(expf(fr(a + a)) + 1)));
    return x < 0 ? -t : t;
  }
  const z = fr(x * x);
  let y = TANH.p[0];
  for (let i = 1; i < TANH.p.length; i++) y = fr(fr(y * z) + TANH.p[i]);
  return fr(fr(fr(y * z) * x) + x);
}

/** f32 logistic sigmoid, stable for large |x|. */
export function sigmoidf(x: number): number {
  const e = expf(-Math.abs(x));
  const d = fr(1 + e);
  return x >= 0 ? fr(1 / d) : fr(e / d);
}

// ---------------------------------------------------------------- WebAssembly renderings

/** SIMD opcodes (after the 0xFD prefix) used by the CPU backend's kernels. */
export const SIMD = {
  load: 0x00,
  load32Splat: 0x09,
  store: 0x0b,
  const: 0x0c,
  i32x4Splat: 0x11,
  f32x4Splat: 0x13,
  i32x4Extract: 0x1b,
  i32x4Replace: 0x1c,
  f32x4Extract: 0x1f,
  f32x4Replace: 0x20,
  i32x4Eq: 0x37,
  i32x4Ne: 0x38,
  i32x4LtS: 0x39,
  i32x4LtU: 0x3a,
  i32x4GtS: 0x3b,
  i32x4GtU: 0x3c,
  i32x4LeS: 0x3d,
  i32x4LeU: 0x3e,
  i32x4GeS: 0x3f,
  i32x4GeU: 0x40,
  f32x4Eq: 0x41,
  f32x4Ne: 0x42,
  f32x4Lt: 0x43,
  f32x4Gt: 0x44,
  f32x4Le: 0x45,
  f32x4Ge: 0x46,
  not: 0x4d,
  and: 0x4e,
  andnot: 0x4f,
  or: 0x50,
  xor: 0x51,
  bitselect: 0x52,
  f32x4Floor: 0x68,
  i32x4Shl: 0xab,
  i32x4ShrS: 0xac,
  i32x4Add: 0xae,
  i32x4Sub: 0xb1,
  i32x4Mul: 0xb5,
  i32x4MinS: 0xb6,
  i32x4MinU: 0xb7,
  i32x4MaxS: 0xb8,
  i32x4MaxU: 0xb9,
  f32x4Abs: 0xe0,
  f32x4Neg: 0xe1,
  f32x4Sqrt: 0xe3,
  f32x4Add: 0xe4,
  f32x4Sub: 0xe5,
  f32x4Mul: 0xe6,
  f32x4Div: 0xe7,
  f32x4Min: 0xe8,
  f32x4Max: 0xe9,
  f32x4Pmin: 0xea,
  f32x4Pmax: 0xeb,
  i32x4TruncSatF32S: 0xf8,
  i32x4TruncSatF32U: 0xf9,
  f32x4ConvertI32S: 0xfa,
  f32x4ConvertI32U: 0xfb,
} as const;

/** Emits SIMD instruction `op`. */
export function simd(f: FunctionBuilder, op: number): FunctionBuilder {
  f.raw(0xfd);
  uleb(f.code, op);
  return f;
}

/** The bits of `v` as an f32. */
function f32Bits(v: number): number {
  return new Int32Array(new Float32Array([v]).buffer)[0];
}

/** Emits `v128.const` of four equal 32-bit lanes with bits `bits`. */
export function splatBits(f: FunctionBuilder, bits: number): FunctionBuilder {
  simd(f, SIMD.const);
  const b = new Uint8Array(new Int32Array([bits, bits, bits, bits]).buffer);
  for (const x of b) f.raw(x);
  return f;
}

/** Emits `v128.const` of four equal f32 lanes. */
export function splatF32(f: FunctionBuilder, v: number): FunctionBuilder {
  return splatBits(f, f32Bits(v));
}

/**
 * The constants of one function, each a v128 local set once at the function's start (V8 would
 * otherwise rematerialize a `v128.const` at every use inside a loop). Call {@link ConstPool.finish}
 * after the body is emitted: it prepends the initializations.
 */
export class ConstPool {
  readonly #f: FunctionBuilder;
  readonly #locals = new Map<number, number>();

  /** A pool for the function `f`. */
  constructor(f: FunctionBuilder) {
    this.#f = f;
  }

  /** Pushes four lanes of bits `bits`. */
  bits(bits: number): void {
    let local = this.#locals.get(bits | 0);
    if (local === undefined) {
      local = this.#f.local("v128");
      this.#locals.set(bits | 0, local);
    }
    this.#f.localGet(local);
  }

  /** Pushes four lanes of the f32 `v`. */
  f32(v: number): void {
    this.bits(f32Bits(v));
  }

  /** Prepends the initialization of every constant used to the function's code. */
  finish(): void {
    const init: number[] = [];
    for (const [bits, local] of this.#locals) {
      init.push(0xfd);
      uleb(init, SIMD.const);
      for (const x of new Uint8Array(new Int32Array([bits, bits, bits, bits]).buffer)) {
        init.push(x);
      }
      init.push(0x21);
      uleb(init, local);
    }
    this.#f.code.unshift(...init);
  }
}

/** Emits `y = p[0]; y = y * x + p[i]` (separate multiply and add) with x in local `x`. */
function horner(f: FunctionBuilder, c: ConstPool, x: number, p: readonly number[]): void {
  c.f32(p[0]);
  for (let i = 1; i < p.length; i++) {
    f.localGet(x);
    simd(f, SIMD.f32x4Mul);
    c.f32(p[i]);
    simd(f, SIMD.f32x4Add);
  }
}

/** Emits exp of the v128 local `x` (inline); leaves the result on the stack. */
export function emitExp(f: FunctionBuilder, c: ConstPool, x: number): void {
  const xc = f.local("v128"), fx = f.local("v128"), r = f.local("v128"), z = f.local("v128");
  const y = f.local("v128");
  // xc = min(max(x, lo), hi): pmax/pmin keep a NaN x, as Math.max/Math.min do.
  f.localGet(x);
  c.f32(EXP.lo);
  simd(f, SIMD.f32x4Pmax);
  c.f32(EXP.hi);
  simd(f, SIMD.f32x4Pmin);
  f.localSet(xc);
  // fx = floor(xc * log2e + 0.5)
  f.localGet(xc);
  c.f32(EXP.log2e);
  simd(f, SIMD.f32x4Mul);
  c.f32(0.5);
  simd(f, SIMD.f32x4Add);
  simd(f, SIMD.f32x4Floor);
  f.localSet(fx);
  // r = (xc - fx * c1) - fx * c2
  f.localGet(xc).localGet(fx);
  c.f32(EXP.c1);
  simd(f, SIMD.f32x4Mul);
  simd(f, SIMD.f32x4Sub);
  f.localGet(fx);
  c.f32(EXP.c2);
  simd(f, SIMD.f32x4Mul);
  simd(f, SIMD.f32x4Sub);
  f.localSet(r);
  f.localGet(r).localGet(r);
  simd(f, SIMD.f32x4Mul);
  f.localSet(z);
  horner(f, c, r, EXP.p);
  // y = (y * z + r) + 1
  f.localGet(z);
  simd(f, SIMD.f32x4Mul);
  f.localGet(r);
  simd(f, SIMD.f32x4Add);
  c.f32(1);
  simd(f, SIMD.f32x4Add);
  // * 2^fx: the low mantissa bits of fx + 2^23 + 127 are fx + 127, shifted into the exponent.
  f.localGet(fx);
  c.f32(8388608 + 127);
  simd(f, SIMD.f32x4Add);
  c.bits(0x7fffff);
  simd(f, SIMD.and);
  f.i32Const(23);
  simd(f, SIMD.i32x4Shl);
  simd(f, SIMD.f32x4Mul);
  f.localSet(y);
  // x > overflow -> +inf; x < lo -> 0
  c.bits(0x7f800000);
  f.localGet(y).localGet(x);
  c.f32(EXP.overflow);
  simd(f, SIMD.f32x4Gt);
  simd(f, SIMD.bitselect);
  f.localGet(x);
  c.f32(EXP.lo);
  simd(f, SIMD.f32x4Lt);
  simd(f, SIMD.andnot);
}

/** Emits log of the v128 local `x` (inline); leaves the result on the stack. */
export function emitLog(f: FunctionBuilder, c: ConstPool, x: number): void {
  const e = f.local("v128"), m = f.local("v128"), mask = f.local("v128"), z = f.local("v128");
  const y = f.local("v128"), fe = f.local("v128");
  // e = (bits >> 23) - 126 (i32 lanes); m = mantissa in [0.5, 1)
  f.localGet(x).i32Const(23);
  simd(f, SIMD.i32x4ShrS);
  c.bits(126);
  simd(f, SIMD.i32x4Sub);
  f.localSet(e);
  f.localGet(x);
  c.bits(0x807fffff | 0);
  simd(f, SIMD.and);
  c.bits(0x3f000000);
  simd(f, SIMD.or);
  f.localSet(m);
  // mask = m < sqrthf: e -= 1 (adding the all-ones mask), m = m + m - 1; else m = m - 1
  f.localGet(m);
  c.f32(LOG.sqrthf);
  simd(f, SIMD.f32x4Lt);
  f.localSet(mask);
  f.localGet(e).localGet(mask);
  simd(f, SIMD.i32x4Add);
  f.localSet(e);
  f.localGet(m).localGet(m);
  simd(f, SIMD.f32x4Add);
  c.f32(1);
  simd(f, SIMD.f32x4Sub);
  f.localGet(m);
  c.f32(1);
  simd(f, SIMD.f32x4Sub);
  f.localGet(mask);
  simd(f, SIMD.bitselect);
  f.localSet(m);
  f.localGet(m).localGet(m);
  simd(f, SIMD.f32x4Mul);
  f.localSet(z);
  horner(f, c, m, LOG.p);
  f.localGet(m);
  simd(f, SIMD.f32x4Mul);
  f.localGet(z);
  simd(f, SIMD.f32x4Mul);
  f.localSet(y);
  f.localGet(e);
  simd(f, SIMD.f32x4ConvertI32S);
  f.localSet(fe);
  // y = (y + fe * q1) - 0.5 * z; res = (m + y) + fe * q2
  f.localGet(y).localGet(fe);
  c.f32(LOG.q1);
  simd(f, SIMD.f32x4Mul);
  simd(f, SIMD.f32x4Add);
  c.f32(0.5);
  f.localGet(z);
  simd(f, SIMD.f32x4Mul);
  simd(f, SIMD.f32x4Sub);
  f.localSet(y);
  f.localGet(m).localGet(y);
  simd(f, SIMD.f32x4Add);
  f.localGet(fe);
  c.f32(LOG.q2);
  simd(f, SIMD.f32x4Mul);
  simd(f, SIMD.f32x4Add);
  f.localSet(y);
  // Specials, last one wins: subnormal or zero -> -inf; +inf -> +inf; x < 0 or NaN -> NaN.
  c.bits(0xff800000 | 0);
  f.localGet(y).localGet(x);
  c.bits(0x7f800000);
  simd(f, SIMD.and);
  c.bits(0);
  simd(f, SIMD.i32x4Eq);
  simd(f, SIMD.bitselect);
  f.localSet(y);
  c.bits(0x7f800000);
  f.localGet(y).localGet(x);
  c.bits(0x7f800000);
  simd(f, SIMD.i32x4Eq);
  simd(f, SIMD.bitselect);
  f.localSet(y);
  c.bits(0x7fc00000);
  f.localGet(y).localGet(x);
  c.f32(0);
  simd(f, SIMD.f32x4Ge);
  simd(f, SIMD.not);
  simd(f, SIMD.bitselect);
}

/** Emits tanh of the v128 local `x` (inline); leaves the result on the stack. */
export function emitTanh(f: FunctionBuilder, c: ConstPool, x: number): void {
  const a = f.local("v128"), z = f.local("v128"), e2 = f.local("v128");
  f.localGet(x);
  simd(f, SIMD.f32x4Abs);
  f.localSet(a);
  f.localGet(a).localGet(a);
  simd(f, SIMD.f32x4Add);
  f.localSet(e2);
  // t = copysign(1 - 2 / (exp(2a) + 1), x)
  c.f32(1);
  c.f32(2);
  emitExp(f, c, e2);
  c.f32(1);
  simd(f, SIMD.f32x4Add);
  simd(f, SIMD.f32x4Div);
  simd(f, SIMD.f32x4Sub);
  f.localGet(x);
  c.bits(0x7fffffff);
  simd(f, SIMD.bitselect);
  // polynomial for |x| <= 0.625: (poly(z) * z) * x + x
  f.localGet(x).localGet(x);
  simd(f, SIMD.f32x4Mul);
  f.localSet(z);
  horner(f, c, z, TANH.p);
  f.localGet(z);
  simd(f, SIMD.f32x4Mul);
  f.localGet(x);
  simd(f, SIMD.f32x4Mul);
  f.localGet(x);
  simd(f, SIMD.f32x4Add);
  // t where |x| > 0.625, else the polynomial
  f.localGet(a);
  c.f32(0.625);
  simd(f, SIMD.f32x4Gt);
  simd(f, SIMD.bitselect);
}

/** Emits the logistic sigmoid of the v128 local `x` (inline); leaves the result on the stack. */
export function emitSigmoid(f: FunctionBuilder, c: ConstPool, x: number): void {
  const e = f.local("v128"), d = f.local("v128"), nx = f.local("v128");
  f.localGet(x);
  simd(f, SIMD.f32x4Abs);
  simd(f, SIMD.f32x4Neg);
  f.localSet(nx);
  emitExp(f, c, nx);
  f.localSet(e);
  c.f32(1);
  f.localGet(e);
  simd(f, SIMD.f32x4Add);
  f.localSet(d);
  // x >= 0 ? 1 / d : e / d
  c.f32(1);
  f.localGet(d);
  simd(f, SIMD.f32x4Div);
  f.localGet(e).localGet(d);
  simd(f, SIMD.f32x4Div);
  f.localGet(x);
  c.f32(0);
  simd(f, SIMD.f32x4Ge);
  simd(f, SIMD.bitselect);
}
