/**
 * The WebAssembly binary builder (gpu/cpu/wasm_builder.ts) and the generated SIMD matrix
 * multiply (gpu/cpu/gemm.ts): opcodes validated and run against JavaScript; products against a
 * double-precision reference over many shapes (edges of the 6 x 8 micro-tile, k = 0, sizes 1,
 * scaled-down DCGAN and MLP products), all four transpose combinations, padded strides,
 * accumulate on and off, sub-blocks of rows and columns (nothing outside touched), the fused
 * epilogues, every path (packed, direct, dot) and both the relaxed-FMA and mul + add modules,
 * plus a small-blocking module that crosses K, M and N block boundaries at small sizes, and two
 * workers computing halves of one product concurrently. Tolerance: (k + 4) * 2^-23 * sum_p
 * |a||b| (plus the magnitudes of what is added), the f32 summation bound.
 */

import assert from "node:assert/strict";
import { ModuleBuilder, sleb, uleb } from "../gpu/cpu/wasm_builder.ts";
import {
  buildGemmModule,
  GEMM_FLAGS,
  GEMM_WORK_BYTES,
  GemmKernel,
  gemmModule,
  type GemmOptions,
  gemmWorkBytes,
  relaxedSimdSupported,
} from "../gpu/cpu/gemm.ts";
import { WorkerPool } from "../gpu/cpu/pool.ts";

/** mulberry32: deterministic test data. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PAGE = 65536;

function sharedMemory(bytes: number): WebAssembly.Memory {
  return new WebAssembly.Memory({
    initial: Math.ceil(bytes / PAGE),
    maximum: 65536,
    shared: true,
  });
}

// ---- builder ----------------------------------------------------------------------------------

Deno.test("wasm builder: LEB128 encodings", () => {
  const u = (v: number) => {
    const o: number[] = [];
    uleb(o, v);
    return o;
  };
  const s = (v: number | bigint) => {
    const o: number[] = [];
    sleb(o, v);
    return o;
  };
  assert.deepEqual(u(0), [0]);
  assert.deepEqual(u(127), [127]);
  assert.deepEqual(u(128), [0x80, 1]);
  assert.deepEqual(u(624485), [0xe5, 0x8e, 0x26]);
  assert.deepEqual(u(0xffffffff), [0xff, 0xff, 0xff, 0xff, 0x0f]);
  assert.deepEqual(s(0), [0]);
  assert.deepEqual(s(63), [63]);
  assert.deepEqual(s(64), [0xc0, 0]);
  assert.deepEqual(s(-1), [0x7f]);
  assert.deepEqual(s(-64), [0x40]);
  assert.deepEqual(s(-65), [0xbf, 0x7f]);
  assert.deepEqual(s(-123456), [0xc0, 0xbb, 0x78]);
  assert.deepEqual(s(-(2n ** 63n)), [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f]);
  assert.throws(() => uleb([], -1));
});

/** Instantiates a builder's module over a fresh shared memory. */
function instantiate(mb: ModuleBuilder, memory = sharedMemory(PAGE)) {
  const bytes = mb.build();
  assert.ok(WebAssembly.validate(bytes as BufferSource), "module validates");
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes as BufferSource), {
    env: { memory },
  });
  return { exports: inst.exports as Record<string, (...a: number[]) => number>, memory };
}

Deno.test("wasm builder: scalar ops, control flow, memory, calls", () => {
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  const sq = mb.addFunction(undefined, ["i32"], ["i32"], (f) => {
    f.localGet(0).localGet(0).i32Mul();
  });
  // sum of squares 0..n-1 through a loop, a block and a call
  mb.addFunction("sumsq", ["i32"], ["i32"], (f) => {
    const i = f.local("i32");
    const s = f.local("i32");
    f.block((out) => {
      f.loop((top) => {
        f.localGet(i).localGet(0).i32GeS().brIf(out);
        f.localGet(s).localGet(i).call(sq).i32Add().localSet(s);
        f.localGet(i).i32Const(1).i32Add().localSet(i);
        f.br(top);
      });
    });
    f.localGet(s);
  });
  mb.addFunction("abs", ["i32"], ["i32"], (f) => {
    f.localGet(0).i32Const(0).i32LtS();
    f.if(() => f.i32Const(0).localGet(0).i32Sub().localSet(0), () => f.nop());
    f.localGet(0);
  });
  mb.addFunction("sel", ["i32", "i32", "i32"], ["i32"], (f) => {
    f.localGet(0).localGet(1).localGet(2).select();
  });
  mb.addFunction("bits", ["i32", "i32"], ["i32"], (f) => {
    // ((a & b) | (a ^ b)) << 1 >>> 1, then rem/div checks mixed in
    f.localGet(0).localGet(1).i32And().localGet(0).localGet(1).i32Xor().i32Or();
    f.i32Const(1).i32Shl().i32Const(1).i32ShrU();
    f.localGet(0).i32Const(7).i32RemU().i32Add();
    f.localGet(0).i32Const(-3).i32DivS().i32Add();
  });
  mb.addFunction("i64ops", ["i32", "i32"], ["i32"], (f) => {
    // low 32 bits of (a * b + (a << 33 >> 1)) as i64 arithmetic
    f.localGet(0).i64ExtendI32U().localGet(1).i64ExtendI32U().i64Mul();
    f.localGet(0).i64ExtendI32U().i64Const(33).i64Shl().i64Const(1).i64ShrU().i64Add();
    f.i64Const(-1).i64And().i32WrapI64();
  });
  mb.addFunction("f32ops", ["f32", "f32"], ["f32"], (f) => {
    // sqrt(|a| * b) - a / b + min(a, b) - max(a, b) + (-a)
    f.localGet(0).f32Abs().localGet(1).f32Mul().f32Sqrt();
    f.localGet(0).localGet(1).f32Div().f32Sub();
    f.localGet(0).localGet(1).f32Min().f32Add();
    f.localGet(0).localGet(1).f32Max().f32Sub();
    f.localGet(0).f32Neg().f32Add();
  });
  mb.addFunction("mem", ["i32"], [], (f) => {
    // [p+8] = [p] + [p+4] as f32; [p+12] = i32 reinterpretation; fill, copy
    f.localGet(0);
    f.localGet(0).f32Load().localGet(0).f32Load({ offset: 4 }).f32Add();
    f.f32Store({ offset: 8 });
    f.localGet(0).localGet(0).f32Load({ offset: 8 }).i32ReinterpretF32().i32Store({ offset: 12 });
    f.localGet(0).i32Const(32).i32Add().i32Const(0xab).i32Const(8).memoryFill();
    f.localGet(0).i32Const(48).i32Add().localGet(0).i32Const(8).memoryCopy();
    f.localGet(0).localGet(0).i64Load().i64Store({ offset: 64 });
  });
  mb.addFunction("atomics", ["i32"], ["i32"], (f) => {
    f.localGet(0).i32Const(5).i32AtomicStore();
    f.localGet(0).i32Const(3).i32AtomicAdd().drop();
    f.localGet(0).i32AtomicLoad();
  });
  const { exports: e, memory } = instantiate(mb);
  assert.equal(e.sumsq(10), 285);
  assert.equal(e.sumsq(0), 0);
  assert.equal(e.abs(-7), 7);
  assert.equal(e.abs(9), 9);
  assert.equal(e.sel(1, 2, 1), 1);
  assert.equal(e.sel(1, 2, 0), 2);
  const bits = (
    a: number,
    b: number,
  ) => ((((((a & b) | (a ^ b)) << 1) >>> 1) + (a >>> 0) % 7 + Math.trunc(a / -3)) | 0);
  assert.equal(e.bits(1234567, 89), bits(1234567, 89));
  assert.equal(e.bits(-5, 3), ((((-5 | 3) << 1) >>> 1) + (-5 >>> 0) % 7 + 1) | 0);
  const i64 = (a: number, b: number) =>
    Number(BigInt.asIntN(32, BigInt(a >>> 0) * BigInt(b >>> 0) + ((BigInt(a >>> 0) << 33n) >> 1n)));
  assert.equal(e.i64ops(123456, 654321), i64(123456, 654321));
  const fr = Math.fround;
  const f32 = (a: number, b: number) => {
    let x = fr(Math.sqrt(fr(Math.abs(a) * b)));
    x = fr(x - fr(a / b));
    x = fr(x + Math.min(a, b));
    x = fr(x - Math.max(a, b));
    return fr(x - a);
  };
  assert.equal(e.f32ops(fr(-2.5), fr(3.25)), f32(fr(-2.5), fr(3.25)));
  const F = new Float32Array(memory.buffer);
  const I = new Int32Array(memory.buffer);
  const B = new Uint8Array(memory.buffer);
  F[64] = 1.5;
  F[65] = 2.25;
  e.mem(256);
  assert.equal(F[66], 3.75);
  assert.equal(I[67], new Int32Array(new Float32Array([3.75]).buffer)[0]);
  assert.deepEqual([...B.subarray(288, 296)], new Array(8).fill(0xab));
  assert.deepEqual([...F.subarray(76, 78)], [1.5, 2.25]);
  assert.deepEqual([...F.subarray(80, 82)], [1.5, 2.25]);
  assert.equal(e.atomics(512), 8);
});

Deno.test("wasm builder: SIMD ops against JavaScript", () => {
  const fr = Math.fround;
  const x = [1.5, -2.25, 9, 0.125].map(fr);
  const y = [-0.5, 4, 3, -8].map(fr);
  type V = number[];
  const lanes = (fn: (a: number, b: number) => number) => (a: V, b: V) =>
    a.map((v, i) => fn(v, b[i]));
  const binary: [
    string,
    (f: import("../gpu/cpu/wasm_builder.ts").FunctionBuilder) => void,
    (a: V, b: V) => V,
  ][] = [
    ["add", (f) => f.f32x4Add(), lanes((a, b) => fr(a + b))],
    ["sub", (f) => f.f32x4Sub(), lanes((a, b) => fr(a - b))],
    ["mul", (f) => f.f32x4Mul(), lanes((a, b) => fr(a * b))],
    ["div", (f) => f.f32x4Div(), lanes((a, b) => fr(a / b))],
    ["min", (f) => f.f32x4Min(), lanes(Math.min)],
    ["max", (f) => f.f32x4Max(), lanes(Math.max)],
    ["pmin", (f) => f.f32x4Pmin(), lanes((a, b) => (b < a ? b : a))],
    ["pmax", (f) => f.f32x4Pmax(), lanes((a, b) => (a < b ? b : a))],
  ];
  const unary: [
    string,
    (f: import("../gpu/cpu/wasm_builder.ts").FunctionBuilder) => void,
    (a: V) => V,
  ][] = [
    ["abs", (f) => f.f32x4Abs(), (a) => a.map(Math.abs)],
    ["neg", (f) => f.f32x4Neg(), (a) => a.map((v) => -v)],
    ["sqrt", (f) => f.f32x4Abs().f32x4Sqrt(), (a) => a.map((v) => fr(Math.sqrt(Math.abs(v))))],
  ];
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  // Each op: out[p + 32] = op(in[p], in[p + 16]) for p = 0 (vectors at byte 0 and 16).
  for (const [name, emit] of binary) {
    mb.addFunction(name, [], [], (f) => {
      f.i32Const(32).i32Const(0).v128Load().i32Const(0).v128Load({ offset: 16 });
      emit(f);
      f.v128Store();
    });
  }
  for (const [name, emit] of unary) {
    mb.addFunction(name, [], [], (f) => {
      f.i32Const(32).i32Const(0).v128Load();
      emit(f);
      f.v128Store();
    });
  }
  mb.addFunction("lanes", ["f32"], ["f32"], (f) => {
    // splat(s), replace lane 2 with in[1], extract lane 2 + lane 0, store the vector too
    const v = f.local("v128");
    f.localGet(0).f32x4Splat().i32Const(0).f32Load({ offset: 4 }).f32x4ReplaceLane(2).localSet(v);
    f.i32Const(32).localGet(v).v128Store();
    f.localGet(v).f32x4ExtractLane(2).localGet(v).f32x4ExtractLane(0).f32Add();
  });
  mb.addFunction("consts", [], [], (f) => {
    f.i32Const(32).v128ConstF32([1, 2, 3, 4]).v128ConstI32([1, 1, 1, 1]).i32x4Add().v128Store();
  });
  mb.addFunction("ints", [], [], (f) => {
    // ((splat(7) * [1,2,3,4]) - splat(1)) << 2 >> 1, eq/gt masks, and/or/xor/andnot, bitselect
    const a = f.local("v128");
    f.i32Const(7).i32x4Splat().v128ConstI32([1, 2, 3, 4]).i32x4Mul().i32Const(1).i32x4Splat();
    f.i32x4Sub().i32Const(2).i32x4Shl().i32Const(1).i32x4ShrS().localSet(a);
    f.i32Const(32).localGet(a).v128Store();
    f.i32Const(48).localGet(a).i32Const(26).i32x4Splat().i32x4Eq().v128Store();
    f.i32Const(64).localGet(a).i32Const(26).i32x4Splat().i32x4GtS().v128Store();
    f.i32Const(80).v128ConstI32([12, 10, 6, 5]).v128ConstI32([10, 12, 3, 6]).v128And();
    f.v128ConstI32([1, 0, 0, 0]).v128Or().v128ConstI32([0, 0, 0, 3]).v128Xor().v128Store();
    f.i32Const(96).v128ConstI32([-1, -1, 7, 7]).v128ConstI32([1, 2, 3, 4]).v128AndNot();
    f.v128Store();
    f.i32Const(112).v128ConstI32([1, 2, 3, 4]).v128ConstI32([5, 6, 7, 8]);
    f.v128ConstI32([-1, 0, -1, 0]).v128Bitselect().v128Store();
    f.i32Const(128).localGet(a).i32Const(1).i32x4ShrU().v128Store();
    f.i32Const(144).localGet(a).i32Const(100).i32x4Splat().i32x4LtS().v128Store();
  });
  mb.addFunction("extract", [], ["i32"], (f) => {
    f.v128ConstI32([5, 6, 7, 8]).i32Const(-9).i32x4ReplaceLane(1).i32x4ExtractLane(1);
  });
  mb.addFunction("shuffle", [], [], (f) => {
    f.i32Const(32).i32Const(0).v128Load().i32Const(0).v128Load({ offset: 16 });
    // 32-bit lanes [0, 4, 1, 5] (unpack low)
    f.i8x16Shuffle([0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23]).v128Store();
  });
  mb.addFunction("loads", [], [], (f) => {
    f.i32Const(32).i32Const(0).v128Load32Splat({ offset: 8 }).v128Store();
    f.i32Const(48).i32Const(0).v128Load32Zero({ offset: 4 }).v128Store();
    f.i32Const(64).i32Const(0).v128Load64Zero({ offset: 4 }).v128Store();
    f.i32Const(80).i32Const(0).v128Load64Splat().v128Store();
  });
  mb.addFunction("cmp", [], [], (f) => {
    f.i32Const(32).i32Const(0).v128Load().i32Const(0).v128Load({ offset: 16 }).f32x4Lt();
    f.v128Store();
    f.i32Const(48).i32Const(0).v128Load().i32Const(0).v128Load({ offset: 16 }).f32x4Gt();
    f.v128Store();
    f.i32Const(64).i32Const(0).v128Load().i32Const(0).v128Load().f32x4Eq().v128AnyTrue();
    f.i32Store();
  });
  const { exports: e, memory } = instantiate(mb);
  const F = new Float32Array(memory.buffer);
  const I = new Int32Array(memory.buffer);
  const load = () => {
    F.set(x, 0);
    F.set(y, 4);
  };
  const out = (at = 8) => [...F.subarray(at, at + 4)];
  for (const [name, , ref] of binary) {
    load();
    e[name]();
    assert.deepEqual(out(), ref(x, y), name);
  }
  for (const [name, , ref] of unary) {
    load();
    e[name]();
    assert.deepEqual(out(), ref(x), name);
  }
  load();
  assert.equal(e.lanes(fr(0.75)), fr(x[1] + 0.75));
  assert.deepEqual(out(), [0.75, 0.75, x[1], 0.75]);
  e.consts();
  assert.deepEqual(
    [...I.subarray(8, 12)],
    [1, 2, 3, 4].map((v) => new Int32Array(new Float32Array([v]).buffer)[0] + 1),
  );
  e.ints();
  const a = [1, 2, 3, 4].map((v) => ((7 * v - 1) << 2) >> 1);
  assert.deepEqual([...I.subarray(8, 12)], a);
  assert.deepEqual([...I.subarray(12, 16)], a.map((v) => (v === 26 ? -1 : 0)));
  assert.deepEqual([...I.subarray(16, 20)], a.map((v) => (v > 26 ? -1 : 0)));
  assert.deepEqual([...I.subarray(20, 24)], [(12 & 10) | 1, 10 & 12, 6 & 3, (5 & 6) ^ 3]);
  assert.deepEqual([...I.subarray(24, 28)], [-1 & ~1, -1 & ~2, 7 & ~3, 7 & ~4]);
  assert.deepEqual([...I.subarray(28, 32)], [1, 6, 3, 8]);
  assert.deepEqual([...I.subarray(32, 36)], a.map((v) => v >>> 1));
  assert.deepEqual([...I.subarray(36, 40)], a.map((v) => (v < 100 ? -1 : 0)));
  assert.equal(e.extract(), -9);
  load();
  e.shuffle();
  assert.deepEqual(out(), [x[0], y[0], x[1], y[1]]);
  load();
  e.loads();
  assert.deepEqual(out(8), [x[2], x[2], x[2], x[2]]);
  assert.deepEqual(out(12), [x[1], 0, 0, 0]);
  assert.deepEqual(out(16), [x[1], x[2], 0, 0]);
  assert.deepEqual(out(20), [x[0], x[1], x[0], x[1]]);
  load();
  e.cmp();
  assert.deepEqual([...I.subarray(8, 12)], x.map((v, i) => (v < y[i] ? -1 : 0)));
  assert.deepEqual([...I.subarray(12, 16)], x.map((v, i) => (v > y[i] ? -1 : 0)));
  assert.equal(I[16], 1);
});

Deno.test("wasm builder: relaxed SIMD multiply-add", () => {
  assert.ok(relaxedSimdSupported(), "V8 in Deno 2.9.6 supports relaxed SIMD");
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  mb.addFunction("madd", [], [], (f) => {
    f.i32Const(48).i32Const(0).v128Load().i32Const(0).v128Load({ offset: 16 });
    f.i32Const(0).v128Load({ offset: 32 }).f32x4RelaxedMadd().v128Store();
    f.i32Const(64).i32Const(0).v128Load().i32Const(0).v128Load({ offset: 16 });
    f.i32Const(0).v128Load({ offset: 32 }).f32x4RelaxedNmadd().v128Store();
  });
  const { exports: e, memory } = instantiate(mb);
  const F = new Float32Array(memory.buffer);
  F.set([1, 2, 3, 4, 5, 6, 7, 8, 0.5, -1, 10, 0]);
  e.madd();
  assert.deepEqual([...F.subarray(12, 16)], [5.5, 11, 31, 32]);
  assert.deepEqual([...F.subarray(16, 20)], [-4.5, -13, -11, -32]);
});

Deno.test("wasm builder: rejects misuse", () => {
  const mb = new ModuleBuilder();
  assert.throws(() => mb.importMemory({ min: 1, shared: true }), /max/);
  mb.declareFunction();
  assert.throws(() => mb.build(), /declared but not defined/);
  const m2 = new ModuleBuilder();
  assert.throws(() =>
    m2.addFunction("f", [], [], (f) => {
      f.block(() => {});
      f.br({ depth: 0 });
    }), /not open/);
  assert.throws(() => m2.addFunction("g", [], [], (f) => f.f32x4ExtractLane(4)), /lane/);
});

// ---- gemm -------------------------------------------------------------------------------------

/** One test product. */
interface Case {
  m: number;
  k: number;
  n: number;
  ta: boolean;
  tb: boolean;
  /** Extra elements per stored row of A / B / C (padded leading dimensions). */
  pad?: number;
  accumulate?: boolean;
  /** Sub-block of C: [r0, r1) x [c0, c1) (default: all). */
  block?: [number, number, number, number];
  /** Flag bits (epilogue and path forcing) beyond ACCUMULATE. */
  flags?: number;
  slope?: number;
}

/** A memory and kernels shared by the gemm tests (grown as needed). */
class Harness {
  memory = sharedMemory(64 << 20);
  kernels = new Map<string, GemmKernel>();

  kernel(opts: Partial<GemmOptions>): GemmKernel {
    const key = JSON.stringify(opts);
    let g = this.kernels.get(key);
    if (!g) {
      g = GemmKernel.create(this.memory, opts);
      this.kernels.set(key, g);
    }
    return g;
  }

  ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / PAGE));
  }
}

const H = new Harness();

/** Runs one case on `g` and checks it against the double-precision reference. */
function check(g: GemmKernel, c: Case, seed: number, what: string): void {
  const { m, k, n, ta, tb } = c;
  const pad = c.pad ?? 0;
  const sai = ta ? 1 : k + pad, sap = ta ? m + pad : 1;
  const sbp = tb ? 1 : n + pad, sbj = tb ? k + pad : 1;
  const ldc = n + pad;
  const aLen = ta ? Math.max(1, k) * (m + pad) : m * (k + pad);
  const bLen = tb ? n * (k + pad) : Math.max(1, k) * (n + pad);
  const cLen = m * ldc;
  const align = (x: number) => Math.ceil(x / 64) * 64;
  const A = 1024;
  const B = align(A + 4 * aLen + 64);
  const C = align(B + 4 * bLen + 64);
  const BIAS = align(C + 4 * cLen + 64);
  const EPI = align(BIAS + 4 * Math.max(m, n) + 64);
  const W = align(EPI + 64);
  H.ensure(W + g.workBytes + 64);
  const F = new Float32Array(H.memory.buffer);
  const I = new Int32Array(H.memory.buffer);
  const r = rng(seed);
  const rnd = () => Math.fround(2 * r() - 1);
  for (let i = 0; i < aLen; i++) F[A / 4 + i] = rnd();
  for (let i = 0; i < bLen; i++) F[B / 4 + i] = rnd();
  for (let i = 0; i < Math.max(m, n); i++) F[BIAS / 4 + i] = rnd();
  const SENTINEL = 12345.5;
  const c0 = new Float32Array(cLen);
  for (let i = 0; i < cLen; i++) c0[i] = c.accumulate ? rnd() : SENTINEL;
  // Sentinels in the padding and outside the block must survive.
  F.set(c0, C / 4);
  // Scratch garbage: the kernel must not depend on zeroed scratch.
  for (let i = 0; i < 4096; i++) F[W / 4 + i] = NaN;
  const flags = (c.accumulate ? GEMM_FLAGS.ACCUMULATE : 0) | (c.flags ?? 0);
  const slope = c.slope ?? 0;
  I[EPI / 4] = BIAS;
  F[EPI / 4 + 1] = slope;
  const [r0, r1, cs, ce] = c.block ?? [0, m, 0, n];
  g.fn(A, sai, sap, B, sbp, sbj, C, ldc, k, r0, r1, cs, ce, flags, W, EPI);
  const out = new Float32Array(H.memory.buffer, C, cLen);
  const bias = new Float32Array(H.memory.buffer, BIAS, Math.max(m, n));
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < ldc; j++) {
      const idx = i * ldc + j;
      const inside = j < n && i >= r0 && i < r1 && j >= cs && j < ce;
      if (!inside) {
        assert.equal(out[idx], c0[idx], `${what}: C[${i},${j}] outside the block changed`);
        continue;
      }
      let s = 0;
      let mag = 0;
      for (let p = 0; p < k; p++) {
        const x = F[A / 4 + i * sai + p * sap] * F[B / 4 + p * sbp + j * sbj];
        s += x;
        mag += Math.abs(x);
      }
      if (c.accumulate) {
        s += c0[idx];
        mag += Math.abs(c0[idx]);
      }
      if (flags & GEMM_FLAGS.BIAS_ROW) {
        s += bias[i];
        mag += Math.abs(bias[i]);
      }
      if (flags & GEMM_FLAGS.BIAS_COL) {
        s += bias[j];
        mag += Math.abs(bias[j]);
      }
      if (flags & GEMM_FLAGS.RELU) s = Math.max(s, 0);
      if (flags & GEMM_FLAGS.LEAKY_RELU) s = s > 0 ? s : s * slope;
      const tol = (k + 4) * 2 ** -23 * mag * Math.max(1, Math.abs(slope)) + 1e-30;
      const got = out[idx];
      if (!(Math.abs(got - s) <= tol)) {
        assert.fail(`${what}: C[${i},${j}] = ${got}, expected ${s} (tol ${tol.toExponential(2)})`);
      }
    }
  }
}

const TRANSPOSES: [boolean, boolean][] = [[false, false], [true, false], [false, true], [
  true,
  true,
]];
const PATHS: [string, number][] = [
  ["auto", 0],
  ["packed", GEMM_FLAGS.FORCE_PACKED],
  ["direct", GEMM_FLAGS.FORCE_DIRECT],
  ["dot", GEMM_FLAGS.FORCE_DOT],
];
const caseName = (c: Case) =>
  `${c.m}x${c.k}x${c.n}${c.ta ? " A^T" : ""}${c.tb ? " B^T" : ""}${c.pad ? ` pad ${c.pad}` : ""}` +
  `${c.accumulate ? " acc" : ""}${c.block ? ` block ${c.block}` : ""}`;

/** Shapes (m, k, n) around the micro-tile's edges and the workloads' sizes. */
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [7, 5, 13],
  [6, 256, 8],
  [6, 8, 256],
  [5, 7, 9],
  [12, 16, 16],
  [13, 17, 19],
  [1, 37, 70],
  [70, 37, 1],
  [2, 3, 1],
  [1, 300, 1],
  [64, 25, 196], // DCGAN D1 forward, batch 1
  [16, 784, 25], // D1 weight gradient, scaled down
  [25, 16, 784], // D1 input gradient, scaled down
  [32, 100, 64], // MLP layer
  [32, 64, 100],
  [40, 300, 50], // crosses KC = 256
  [3, 9, 4],
  [9, 3, 12],
];

for (const relaxed of [true, false]) {
  Deno.test(`gemm (${relaxed ? "relaxed FMA" : "mul + add"}): shapes x transposes x paths`, () => {
    const g = H.kernel({ relaxed });
    if (relaxed) assert.ok(g.relaxed);
    let seed = 1;
    for (const [m, k, n] of SHAPES) {
      for (const [ta, tb] of TRANSPOSES) {
        for (const [pathName, path] of PATHS) {
          for (const accumulate of [false, true]) {
            const c: Case = {
              m,
              k,
              n,
              ta,
              tb,
              accumulate,
              flags: path,
              pad: seed % 3 === 0 ? 3 : 0,
            };
            check(g, c, seed++, `${caseName(c)} ${pathName}`);
          }
        }
      }
    }
  });
}

Deno.test("gemm: k = 0 gives 0 or leaves C, then the epilogue", () => {
  for (const relaxed of [true, false]) {
    const g = H.kernel({ relaxed });
    let seed = 100;
    for (const [m, n] of [[1, 1], [7, 13], [12, 16], [20, 3]]) {
      for (const [ta, tb] of TRANSPOSES) {
        for (const [pathName, path] of PATHS) {
          for (const accumulate of [false, true]) {
            const c: Case = { m, k: 0, n, ta, tb, accumulate, flags: path };
            check(g, c, seed++, `${caseName(c)} ${pathName}`);
            const e: Case = { ...c, flags: path | GEMM_FLAGS.BIAS_COL | GEMM_FLAGS.RELU };
            check(g, e, seed++, `${caseName(c)} ${pathName} bias+relu`);
          }
        }
      }
    }
  }
});

Deno.test("gemm: sub-blocks of rows and columns touch nothing else", () => {
  const g = H.kernel({ relaxed: true });
  let seed = 200;
  const blocks: [number, number, number, [number, number, number, number]][] = [
    [20, 30, 40, [3, 17, 5, 29]],
    [20, 30, 40, [0, 6, 8, 16]],
    [20, 30, 40, [19, 20, 0, 40]],
    [20, 30, 40, [0, 20, 39, 40]],
    [20, 30, 40, [5, 5, 0, 40]], // empty
    [3, 300, 50, [1, 2, 9, 47]],
    [50, 300, 3, [13, 47, 1, 3]],
  ];
  for (const [m, k, n, block] of blocks) {
    for (const [ta, tb] of TRANSPOSES) {
      for (const [pathName, path] of PATHS) {
        for (const accumulate of [false, true]) {
          const c: Case = { m, k, n, ta, tb, accumulate, block, flags: path, pad: 2 };
          check(g, c, seed++, `${caseName(c)} ${pathName}`);
        }
      }
    }
  }
});

Deno.test("gemm: fused epilogues (bias per row / column, ReLU, leaky ReLU)", () => {
  const epilogues: [string, number, number][] = [
    ["bias row", GEMM_FLAGS.BIAS_ROW, 0],
    ["bias col", GEMM_FLAGS.BIAS_COL, 0],
    ["relu", GEMM_FLAGS.RELU, 0],
    ["leaky 0.2", GEMM_FLAGS.LEAKY_RELU, 0.2],
    ["bias row + relu", GEMM_FLAGS.BIAS_ROW | GEMM_FLAGS.RELU, 0],
    ["bias col + leaky 0.01", GEMM_FLAGS.BIAS_COL | GEMM_FLAGS.LEAKY_RELU, 0.01],
  ];
  let seed = 300;
  for (const relaxed of [true, false]) {
    const g = H.kernel({ relaxed });
    for (const [m, k, n] of [[13, 17, 19], [40, 300, 50], [1, 33, 20], [33, 20, 2], [6, 8, 8]]) {
      for (const [ta, tb] of TRANSPOSES) {
        for (const [pathName, path] of PATHS) {
          for (const [epiName, epi, slope] of epilogues) {
            const accumulate = seed % 2 === 0;
            const block: [number, number, number, number] | undefined = seed % 3 === 0
              ? [Math.floor(m / 3), m, Math.floor(n / 4), n]
              : undefined;
            const c: Case = { m, k, n, ta, tb, accumulate, block, flags: path | epi, slope };
            check(g, c, seed++, `${caseName(c)} ${pathName} ${epiName}`);
          }
        }
      }
    }
  }
});

Deno.test("gemm: small blocking crosses K, M and N block boundaries", () => {
  // kc 16, mc 12, nc 16: the products below cross every block boundary, with edges.
  for (const relaxed of [true, false]) {
    const blockings = [
      { kc: 16, mc: 12, nc: 16 },
      { kc: 5, mc: 6, nc: 8, mr: 4, nr: 4 },
      { kc: 7, mc: 10, nc: 24, mr: 5, nr: 12 },
      { kc: 9, mc: 14, nc: 16, mr: 7, nr: 16 },
    ];
    for (const opts of blockings) {
      const g = H.kernel({ relaxed, ...opts, dotKc: 12 });
      let seed = 400;
      for (const [m, k, n] of [[25, 35, 41], [12, 16, 16], [13, 33, 17], [1, 40, 3]]) {
        for (const [ta, tb] of TRANSPOSES) {
          for (const [pathName, path] of PATHS) {
            const accumulate = seed % 2 === 1;
            const flags = path | (seed % 3 === 0 ? GEMM_FLAGS.BIAS_ROW | GEMM_FLAGS.RELU : 0);
            const c: Case = { m, k, n, ta, tb, accumulate, flags };
            check(g, c, seed++, `${JSON.stringify(opts)} ${caseName(c)} ${pathName}`);
          }
        }
      }
    }
  }
});

Deno.test("gemm: module validates, scratch rule, typed wrapper", () => {
  for (const relaxed of [true, false]) {
    const bytes = buildGemmModule({ relaxed });
    assert.ok(WebAssembly.validate(bytes as BufferSource));
  }
  assert.equal(GEMM_WORK_BYTES, 4 * (256 * 2048 + 120 * 256 + 6 * 8));
  assert.equal(gemmWorkBytes({ kc: 16, mc: 12, nc: 16 }), 4 * (16 * 16 + 12 * 16 + 48));
  assert.throws(() => buildGemmModule({ relaxed: true, nr: 6 }), /micro-tile/);
  // GemmKernel.run: A^T (stored [K, M]) times B, bias per column, leaky ReLU, sub-block.
  const g = H.kernel({ relaxed: true });
  const m = 9, k = 11, n = 10;
  const F = new Float32Array(H.memory.buffer);
  const A = 4096, B = 8192, C = 12288, BIAS = 16384, W = 32768;
  const r = rng(7);
  for (let i = 0; i < m * k; i++) F[A / 4 + i] = r() - 0.5;
  for (let i = 0; i < k * n; i++) F[B / 4 + i] = r() - 0.5;
  for (let j = 0; j < n; j++) F[BIAS / 4 + j] = r() - 0.5;
  F.fill(7, C / 4, C / 4 + m * n);
  g.run({
    a: A,
    sai: 1,
    sap: m,
    b: B,
    sbp: n,
    sbj: 1,
    c: C,
    ldc: n,
    k,
    rowStart: 2,
    rowEnd: m,
    colEnd: n,
    work: W,
    bias: { ptr: BIAS, axis: "col" },
    activation: { leakyRelu: 0.1 },
  });
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = F[BIAS / 4 + j];
      for (let p = 0; p < k; p++) s += F[A / 4 + p * m + i] * F[B / 4 + p * n + j];
      s = s > 0 ? s : 0.1 * s;
      const got = F[C / 4 + i * n + j];
      if (i < 2) assert.equal(got, 7);
      else assert.ok(Math.abs(got - s) < 1e-5, `C[${i},${j}] = ${got}, expected ${s}`);
    }
  }
});

Deno.test("gemm: the main thread and two workers compute thirds of one product concurrently", () => {
  const m = 50, k = 70, n = 90;
  const memory = sharedMemory(16 << 20);
  const F = new Float32Array(memory.buffer);
  const CTRL = 256, A = 4096, B = A + 4 * m * k + 64, C = B + 4 * k * n + 64;
  const W0 = Math.ceil((C + 4 * m * n) / 256) * 256 + 256;
  const step = Math.ceil(GEMM_WORK_BYTES / 256) * 256;
  assert.ok(WorkerPool.controlBytes(3) < A - CTRL);
  const r = rng(11);
  for (let i = 0; i < m * k; i++) F[A / 4 + i] = r() - 0.5;
  for (let i = 0; i < k * n; i++) F[B / 4 + i] = r() - 0.5;
  const main = GemmKernel.create(memory, { relaxed: true });
  const pool = new WorkerPool(memory, gemmModule({ relaxed: main.relaxed }), ["gemm"], 3, CTRL);
  try {
    for (let round = 0; round < 3; round++) {
      F.fill(0, C / 4, C / 4 + m * n);
      // Columns [0, 32), [32, 64), [64, 90); transposed-B layout in round 2.
      const tb = round === 2;
      const sbp = tb ? 1 : n, sbj = tb ? k : 1;
      const share = (c0: number, c1: number, w: number) => [
        A,
        k,
        1,
        B,
        sbp,
        sbj,
        C,
        n,
        k,
        0,
        m,
        c0,
        c1,
        0,
        W0 + w * step,
        W0 + w * step,
      ];
      pool.run(main.fn, "gemm", [share(0, 32, 0), share(32, 64, 1), share(64, n, 2)]);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += F[A / 4 + i * k + p] * F[B / 4 + p * sbp + j * sbj];
          assert.ok(Math.abs(F[C / 4 + i * n + j] - s) < 1e-4, `round ${round} C[${i},${j}]`);
        }
      }
    }
  } finally {
    pool.close();
  }
});
