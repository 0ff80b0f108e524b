/**
 * The WebAssembly binary builder (gpu/cpu/wasm_builder.ts): LEB128 encodings, opcodes validated
 * and run against JavaScript (scalar ops, control flow, memory, calls, SIMD, relaxed SIMD), and
 * misuse rejected.
 * @module
 */

import assert from "node:assert/strict";
import { ModuleBuilder, sleb, uleb } from "../gpu/cpu/wasm_builder.ts";
import { relaxedSimdSupported } from "../gpu/cpu/gemm.ts";
import { PAGE, sharedMemory } from "./wasm_memory.ts";

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
