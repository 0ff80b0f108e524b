/**
 * The instruction encoder of gpu/cpu/wasm_builder.ts: {@link FunctionBuilder} emits one
 * function's locals and body (structured control flow, i32/i64/f32 arithmetic, memory access,
 * bulk memory, atomics, SIMD128 and relaxed SIMD).
 * @module
 */

import { type Label, type MemArg, sleb, uleb, VALTYPE, type ValType } from "./wasm_encoding.ts";

/**
 * Emits one function's body. Methods append one instruction each and return `this`, so straight
 * code reads as a chain; structured control takes callbacks so that nesting is visible and the
 * `end`s cannot be forgotten: `f.block((out) => { ...; f.brIf(out); ... })`.
 */
export class FunctionBuilder {
  /** The body bytes (instructions only, without the locals header). */
  readonly code: number[] = [];
  /** Types of the parameters, then of the declared locals. */
  readonly localTypes: ValType[];
  readonly #numParams: number;
  #control = 0;

  /** Creates an emitter for a function with these parameter types. */
  constructor(params: readonly ValType[]) {
    this.localTypes = [...params];
    this.#numParams = params.length;
  }

  /** Declares a new local of type `t` and returns its index. */
  local(t: ValType): number {
    this.localTypes.push(t);
    return this.localTypes.length - 1;
  }

  /** Appends raw bytes. */
  raw(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }

  /** The locals declaration (run-length encoded by type) followed by the body and `end`. */
  encode(): number[] {
    if (this.#control !== 0) throw new Error("wasm builder: unbalanced control constructs");
    const groups: [number, ValType][] = [];
    for (const t of this.localTypes.slice(this.#numParams)) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    const out: number[] = [];
    uleb(out, groups.length);
    for (const [count, t] of groups) {
      uleb(out, count);
      out.push(VALTYPE[t]);
    }
    for (const b of this.code) out.push(b);
    out.push(0x0b);
    return out;
  }

  // ---- control flow -------------------------------------------------------------------------

  #blockType(result?: ValType): void {
    this.code.push(result ? VALTYPE[result] : 0x40);
  }

  #nested(opcode: number, body: (label: Label) => void, result?: ValType): this {
    this.code.push(opcode);
    this.#blockType(result);
    const label = { depth: this.#control++ };
    body(label);
    this.#control--;
    this.code.push(0x0b);
    return this;
  }

  /** `block ... end`: a branch to its label jumps past the end. */
  block(body: (label: Label) => void, result?: ValType): this {
    return this.#nested(0x02, body, result);
  }

  /** `loop ... end`: a branch to its label jumps back to the start. */
  loop(body: (label: Label) => void, result?: ValType): this {
    return this.#nested(0x03, body, result);
  }

  /** `if ... (else ...) end` on the i32 condition on the stack. */
  if(then: (label: Label) => void, otherwise?: (label: Label) => void, result?: ValType): this {
    this.code.push(0x04);
    this.#blockType(result);
    const label = { depth: this.#control++ };
    then(label);
    if (otherwise) {
      this.code.push(0x05);
      otherwise(label);
    }
    this.#control--;
    this.code.push(0x0b);
    return this;
  }

  #relative(label: Label): number {
    const d = this.#control - 1 - label.depth;
    if (d < 0) throw new Error("wasm builder: branch to a label that is not open");
    return d;
  }

  /** `br`: unconditional branch to `label`. */
  br(label: Label): this {
    this.code.push(0x0c);
    uleb(this.code, this.#relative(label));
    return this;
  }

  /** `br_if`: branch to `label` if the i32 on the stack is nonzero. */
  brIf(label: Label): this {
    this.code.push(0x0d);
    uleb(this.code, this.#relative(label));
    return this;
  }

  /** `return`. */
  return(): this {
    return this.raw(0x0f);
  }

  /** `call` function `index`. */
  call(index: number): this {
    this.code.push(0x10);
    uleb(this.code, index);
    return this;
  }

  /** `drop`. */
  drop(): this {
    return this.raw(0x1a);
  }

  /** `select` (untyped: numeric operands). */
  select(): this {
    return this.raw(0x1b);
  }

  /** `nop`. */
  nop(): this {
    return this.raw(0x01);
  }

  /** `unreachable`. */
  unreachable(): this {
    return this.raw(0x00);
  }

  // ---- locals and constants -----------------------------------------------------------------

  /** `local.get`. */
  localGet(i: number): this {
    this.code.push(0x20);
    uleb(this.code, i);
    return this;
  }

  /** `local.set`. */
  localSet(i: number): this {
    this.code.push(0x21);
    uleb(this.code, i);
    return this;
  }

  /** `local.tee`. */
  localTee(i: number): this {
    this.code.push(0x22);
    uleb(this.code, i);
    return this;
  }

  /** `i32.const` (the value is taken modulo 2^32, as a signed integer). */
  i32Const(v: number): this {
    this.code.push(0x41);
    sleb(this.code, v | 0);
    return this;
  }

  /** `i64.const`. */
  i64Const(v: number | bigint): this {
    this.code.push(0x42);
    sleb(this.code, BigInt.asIntN(64, BigInt(v)));
    return this;
  }

  /** `f32.const` (the value rounded to f32). */
  f32Const(v: number): this {
    this.code.push(0x43);
    const bytes = new Uint8Array(new Float32Array([v]).buffer);
    for (const b of bytes) this.code.push(b);
    return this;
  }

  // ---- memory -------------------------------------------------------------------------------

  #mem(opcode: number, natural: number, m: MemArg = {}): this {
    this.code.push(opcode);
    uleb(this.code, m.align ?? natural);
    uleb(this.code, m.offset ?? 0);
    return this;
  }

  /** `i32.load`. */
  i32Load(m?: MemArg): this {
    return this.#mem(0x28, 2, m);
  }
  /** `i64.load`. */
  i64Load(m?: MemArg): this {
    return this.#mem(0x29, 3, m);
  }
  /** `f32.load`. */
  f32Load(m?: MemArg): this {
    return this.#mem(0x2a, 2, m);
  }
  /** `i32.store`. */
  i32Store(m?: MemArg): this {
    return this.#mem(0x36, 2, m);
  }
  /** `i64.store`. */
  i64Store(m?: MemArg): this {
    return this.#mem(0x37, 3, m);
  }
  /** `f32.store`. */
  f32Store(m?: MemArg): this {
    return this.#mem(0x38, 2, m);
  }

  /** `memory.fill` (dest, byte value, length). */
  memoryFill(): this {
    return this.raw(0xfc, 0x0b, 0x00);
  }

  /** `memory.copy` (dest, src, length). */
  memoryCopy(): this {
    return this.raw(0xfc, 0x0a, 0x00, 0x00);
  }

  // ---- atomics (shared memory) --------------------------------------------------------------

  /** `i32.atomic.load`. */
  i32AtomicLoad(m?: MemArg): this {
    this.code.push(0xfe);
    return this.#mem(0x10, 2, m);
  }
  /** `i32.atomic.store`. */
  i32AtomicStore(m?: MemArg): this {
    this.code.push(0xfe);
    return this.#mem(0x17, 2, m);
  }
  /** `i32.atomic.rmw.add` (returns the old value). */
  i32AtomicAdd(m?: MemArg): this {
    this.code.push(0xfe);
    return this.#mem(0x1e, 2, m);
  }
  /** `memory.atomic.notify` (address, count) -> woken. */
  atomicNotify(m?: MemArg): this {
    this.code.push(0xfe);
    return this.#mem(0x00, 2, m);
  }
  /** `memory.atomic.wait32` (address, expected, timeout ns as i64) -> 0 ok, 1 not-equal, 2 timed out. */
  atomicWait32(m?: MemArg): this {
    this.code.push(0xfe);
    return this.#mem(0x01, 2, m);
  }

  // ---- i32 ----------------------------------------------------------------------------------

  /** `i32.eqz`. */
  i32Eqz(): this {
    return this.raw(0x45);
  }
  /** `i32.eq`. */
  i32Eq(): this {
    return this.raw(0x46);
  }
  /** `i32.ne`. */
  i32Ne(): this {
    return this.raw(0x47);
  }
  /** `i32.lt_s`. */
  i32LtS(): this {
    return this.raw(0x48);
  }
  /** `i32.lt_u`. */
  i32LtU(): this {
    return this.raw(0x49);
  }
  /** `i32.gt_s`. */
  i32GtS(): this {
    return this.raw(0x4a);
  }
  /** `i32.gt_u`. */
  i32GtU(): this {
    return this.raw(0x4b);
  }
  /** `i32.le_s`. */
  i32LeS(): this {
    return this.raw(0x4c);
  }
  /** `i32.le_u`. */
  i32LeU(): this {
    return this.raw(0x4d);
  }
  /** `i32.ge_s`. */
  i32GeS(): this {
    return this.raw(0x4e);
  }
  /** `i32.ge_u`. */
  i32GeU(): this {
    return this.raw(0x4f);
  }
  /** `i32.add`. */
  i32Add(): this {
    return this.raw(0x6a);
  }
  /** `i32.sub`. */
  i32Sub(): this {
    return this.raw(0x6b);
  }
  /** `i32.mul`. */
  i32Mul(): this {
    return this.raw(0x6c);
  }
  /** `i32.div_s`. */
  i32DivS(): this {
    return this.raw(0x6d);
  }
  /** `i32.div_u`. */
  i32DivU(): this {
    return this.raw(0x6e);
  }
  /** `i32.rem_s`. */
  i32RemS(): this {
    return this.raw(0x6f);
  }
  /** `i32.rem_u`. */
  i32RemU(): this {
    return this.raw(0x70);
  }
  /** `i32.and`. */
  i32And(): this {
    return this.raw(0x71);
  }
  /** `i32.or`. */
  i32Or(): this {
    return this.raw(0x72);
  }
  /** `i32.xor`. */
  i32Xor(): this {
    return this.raw(0x73);
  }
  /** `i32.shl`. */
  i32Shl(): this {
    return this.raw(0x74);
  }
  /** `i32.shr_s`. */
  i32ShrS(): this {
    return this.raw(0x75);
  }
  /** `i32.shr_u`. */
  i32ShrU(): this {
    return this.raw(0x76);
  }

  // ---- i64 ----------------------------------------------------------------------------------

  /** `i64.eqz`. */
  i64Eqz(): this {
    return this.raw(0x50);
  }
  /** `i64.lt_u`. */
  i64LtU(): this {
    return this.raw(0x54);
  }
  /** `i64.le_u`. */
  i64LeU(): this {
    return this.raw(0x58);
  }
  /** `i64.add`. */
  i64Add(): this {
    return this.raw(0x7c);
  }
  /** `i64.sub`. */
  i64Sub(): this {
    return this.raw(0x7d);
  }
  /** `i64.mul`. */
  i64Mul(): this {
    return this.raw(0x7e);
  }
  /** `i64.and`. */
  i64And(): this {
    return this.raw(0x83);
  }
  /** `i64.or`. */
  i64Or(): this {
    return this.raw(0x84);
  }
  /** `i64.shl`. */
  i64Shl(): this {
    return this.raw(0x86);
  }
  /** `i64.shr_u`. */
  i64ShrU(): this {
    return this.raw(0x88);
  }
  /** `i32.wrap_i64`. */
  i32WrapI64(): this {
    return this.raw(0xa7);
  }
  /** `i64.extend_i32_s`. */
  i64ExtendI32S(): this {
    return this.raw(0xac);
  }
  /** `i64.extend_i32_u`. */
  i64ExtendI32U(): this {
    return this.raw(0xad);
  }

  // ---- f32 ----------------------------------------------------------------------------------

  /** `f32.eq`. */
  f32Eq(): this {
    return this.raw(0x5b);
  }
  /** `f32.ne`. */
  f32Ne(): this {
    return this.raw(0x5c);
  }
  /** `f32.lt`. */
  f32Lt(): this {
    return this.raw(0x5d);
  }
  /** `f32.gt`. */
  f32Gt(): this {
    return this.raw(0x5e);
  }
  /** `f32.le`. */
  f32Le(): this {
    return this.raw(0x5f);
  }
  /** `f32.ge`. */
  f32Ge(): this {
    return this.raw(0x60);
  }
  /** `f32.abs`. */
  f32Abs(): this {
    return this.raw(0x8b);
  }
  /** `f32.neg`. */
  f32Neg(): this {
    return this.raw(0x8c);
  }
  /** `f32.sqrt`. */
  f32Sqrt(): this {
    return this.raw(0x91);
  }
  /** `f32.add`. */
  f32Add(): this {
    return this.raw(0x92);
  }
  /** `f32.sub`. */
  f32Sub(): this {
    return this.raw(0x93);
  }
  /** `f32.mul`. */
  f32Mul(): this {
    return this.raw(0x94);
  }
  /** `f32.div`. */
  f32Div(): this {
    return this.raw(0x95);
  }
  /** `f32.min` (NaN-propagating). */
  f32Min(): this {
    return this.raw(0x96);
  }
  /** `f32.max` (NaN-propagating). */
  f32Max(): this {
    return this.raw(0x97);
  }
  /** `f32.convert_i32_s`. */
  f32ConvertI32S(): this {
    return this.raw(0xb2);
  }
  /** `i32.trunc_f32_s` (traps out of range). */
  i32TruncF32S(): this {
    return this.raw(0xa8);
  }
  /** `i32.reinterpret_f32`. */
  i32ReinterpretF32(): this {
    return this.raw(0xbc);
  }
  /** `f32.reinterpret_i32`. */
  f32ReinterpretI32(): this {
    return this.raw(0xbe);
  }

  // ---- SIMD128 ------------------------------------------------------------------------------

  #simd(op: number): this {
    this.code.push(0xfd);
    uleb(this.code, op);
    return this;
  }

  #simdMem(op: number, natural: number, m: MemArg = {}): this {
    this.#simd(op);
    uleb(this.code, m.align ?? natural);
    uleb(this.code, m.offset ?? 0);
    return this;
  }

  #lane(op: number, lane: number, lanes: number): this {
    if (!Number.isInteger(lane) || lane < 0 || lane >= lanes) {
      throw new RangeError(`wasm builder: lane ${lane} out of range`);
    }
    this.#simd(op);
    this.code.push(lane);
    return this;
  }

  /** `v128.load` (16 bytes, any alignment). */
  v128Load(m?: MemArg): this {
    return this.#simdMem(0x00, 4, m);
  }
  /** `v128.load32_splat`: one f32/i32 from memory into all four lanes. */
  v128Load32Splat(m?: MemArg): this {
    return this.#simdMem(0x09, 2, m);
  }
  /** `v128.load64_splat`. */
  v128Load64Splat(m?: MemArg): this {
    return this.#simdMem(0x0a, 3, m);
  }
  /** `v128.store`. */
  v128Store(m?: MemArg): this {
    return this.#simdMem(0x0b, 4, m);
  }
  /** `v128.store64_lane`: stores 64-bit lane `lane` (0 or 1). */
  v128Store64Lane(lane: number, m: MemArg = {}): this {
    if (lane !== 0 && lane !== 1) throw new RangeError(`wasm builder: lane ${lane} out of range`);
    this.#simdMem(0x5b, 3, m);
    this.code.push(lane);
    return this;
  }
  /** `v128.load32_zero`: one 32-bit value into lane 0, zeros elsewhere. */
  v128Load32Zero(m?: MemArg): this {
    return this.#simdMem(0x5c, 2, m);
  }
  /** `v128.load64_zero`. */
  v128Load64Zero(m?: MemArg): this {
    return this.#simdMem(0x5d, 3, m);
  }
  /** `v128.const` from four f32 lanes. */
  v128ConstF32(lanes: readonly [number, number, number, number]): this {
    this.#simd(0x0c);
    const bytes = new Uint8Array(new Float32Array(lanes).buffer);
    for (const b of bytes) this.code.push(b);
    return this;
  }
  /** `v128.const` from four i32 lanes. */
  v128ConstI32(lanes: readonly [number, number, number, number]): this {
    this.#simd(0x0c);
    const bytes = new Uint8Array(new Int32Array(lanes).buffer);
    for (const b of bytes) this.code.push(b);
    return this;
  }
  /** `i8x16.shuffle` with 16 lane indices into the concatenation of the two operands. */
  i8x16Shuffle(lanes: readonly number[]): this {
    if (lanes.length !== 16 || lanes.some((l) => l < 0 || l > 31)) {
      throw new RangeError("wasm builder: i8x16.shuffle needs 16 lanes in [0, 32)");
    }
    this.#simd(0x0d);
    for (const l of lanes) this.code.push(l);
    return this;
  }
  /** `v128.and`. */
  v128And(): this {
    return this.#simd(0x4e);
  }
  /** `v128.andnot` (a & ~b). */
  v128AndNot(): this {
    return this.#simd(0x4f);
  }
  /** `v128.or`. */
  v128Or(): this {
    return this.#simd(0x50);
  }
  /** `v128.xor`. */
  v128Xor(): this {
    return this.#simd(0x51);
  }
  /** `v128.bitselect` (a, b, mask): bits of a where mask is 1, else of b. */
  v128Bitselect(): this {
    return this.#simd(0x52);
  }
  /** `v128.any_true`. */
  v128AnyTrue(): this {
    return this.#simd(0x53);
  }

  /** `i32x4.splat`. */
  i32x4Splat(): this {
    return this.#simd(0x11);
  }
  /** `i32x4.extract_lane`. */
  i32x4ExtractLane(lane: number): this {
    return this.#lane(0x1b, lane, 4);
  }
  /** `i32x4.replace_lane`. */
  i32x4ReplaceLane(lane: number): this {
    return this.#lane(0x1c, lane, 4);
  }
  /** `i64x2.extract_lane`. */
  i64x2ExtractLane(lane: number): this {
    return this.#lane(0x1d, lane, 2);
  }
  /** `i32x4.eq`. */
  i32x4Eq(): this {
    return this.#simd(0x37);
  }
  /** `i32x4.lt_s`. */
  i32x4LtS(): this {
    return this.#simd(0x39);
  }
  /** `i32x4.gt_s`. */
  i32x4GtS(): this {
    return this.#simd(0x3b);
  }
  /** `i32x4.shl` (by an i32). */
  i32x4Shl(): this {
    return this.#simd(0xab);
  }
  /** `i32x4.shr_s` (by an i32). */
  i32x4ShrS(): this {
    return this.#simd(0xac);
  }
  /** `i32x4.shr_u` (by an i32). */
  i32x4ShrU(): this {
    return this.#simd(0xad);
  }
  /** `i32x4.add`. */
  i32x4Add(): this {
    return this.#simd(0xae);
  }
  /** `i32x4.sub`. */
  i32x4Sub(): this {
    return this.#simd(0xb1);
  }
  /** `i32x4.mul`. */
  i32x4Mul(): this {
    return this.#simd(0xb5);
  }

  /** `f32x4.splat`. */
  f32x4Splat(): this {
    return this.#simd(0x13);
  }
  /** `f32x4.extract_lane`. */
  f32x4ExtractLane(lane: number): this {
    return this.#lane(0x1f, lane, 4);
  }
  /** `f32x4.replace_lane`. */
  f32x4ReplaceLane(lane: number): this {
    return this.#lane(0x20, lane, 4);
  }
  /** `f32x4.eq`. */
  f32x4Eq(): this {
    return this.#simd(0x41);
  }
  /** `f32x4.lt`. */
  f32x4Lt(): this {
    return this.#simd(0x43);
  }
  /** `f32x4.gt`. */
  f32x4Gt(): this {
    return this.#simd(0x44);
  }
  /** `f32x4.abs`. */
  f32x4Abs(): this {
    return this.#simd(0xe0);
  }
  /** `f32x4.neg`. */
  f32x4Neg(): this {
    return this.#simd(0xe1);
  }
  /** `f32x4.sqrt`. */
  f32x4Sqrt(): this {
    return this.#simd(0xe3);
  }
  /** `f32x4.add`. */
  f32x4Add(): this {
    return this.#simd(0xe4);
  }
  /** `f32x4.sub`. */
  f32x4Sub(): this {
    return this.#simd(0xe5);
  }
  /** `f32x4.mul`. */
  f32x4Mul(): this {
    return this.#simd(0xe6);
  }
  /** `f32x4.div`. */
  f32x4Div(): this {
    return this.#simd(0xe7);
  }
  /** `f32x4.min` (NaN-propagating). */
  f32x4Min(): this {
    return this.#simd(0xe8);
  }
  /** `f32x4.max` (NaN-propagating). */
  f32x4Max(): this {
    return this.#simd(0xe9);
  }
  /** `f32x4.pmin` (b < a ? b : a). */
  f32x4Pmin(): this {
    return this.#simd(0xea);
  }
  /** `f32x4.pmax` (a < b ? b : a). */
  f32x4Pmax(): this {
    return this.#simd(0xeb);
  }

  /**
   * `f32x4.relaxed_madd` (a, b, c) -> a * b + c, fused or not as the engine chooses (relaxed
   * SIMD; FMA on x86 with FMA3 and on ARM).
   */
  f32x4RelaxedMadd(): this {
    return this.#simd(0x105);
  }
  /** `f32x4.relaxed_nmadd` (a, b, c) -> -(a * b) + c. */
  f32x4RelaxedNmadd(): this {
    return this.#simd(0x106);
  }
}
