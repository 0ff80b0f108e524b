/**
 * The WebAssembly binary format's basic encodings for gpu/cpu/wasm_builder.ts: value types,
 * LEB128 integers, names, sections, and the memory-argument and label types of instructions.
 * @module
 */

/** A value type. */
export type ValType = "i32" | "i64" | "f32" | "f64" | "v128";

export const VALTYPE: Record<ValType, number> = {
  i32: 0x7f,
  i64: 0x7e,
  f32: 0x7d,
  f64: 0x7c,
  v128: 0x7b,
};

/** Appends the unsigned LEB128 encoding of `value` (an integer in [0, 2^53)) to `out`. */
export function uleb(out: number[], value: number): void {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`uleb: bad value ${value}`);
  let v = value;
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
}

/** Appends the signed LEB128 encoding of `value` (a safe integer or a bigint) to `out`. */
export function sleb(out: number[], value: number | bigint): void {
  let v = BigInt(value);
  for (;;) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    const signBit = (byte & 0x40) !== 0;
    if ((v === 0n && !signBit) || (v === -1n && signBit)) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

/** Appends a length-prefixed UTF-8 name. */
export function name(out: number[], s: string): void {
  const bytes = new TextEncoder().encode(s);
  uleb(out, bytes.length);
  for (const b of bytes) out.push(b);
}

/** Appends a section: id, byte length, contents. */
export function section(out: number[], id: number, contents: number[]): void {
  out.push(id);
  uleb(out, contents.length);
  for (const b of contents) out.push(b);
}

/**
 * Memory immediate of a load or store: `offset` is a constant byte offset added to the address
 * operand; `align` is the log2 of the alignment hint (never required for correctness; defaults to
 * the natural alignment of the access).
 */
export interface MemArg {
  /** Constant byte offset (default 0). */
  offset?: number;
  /** log2 of the alignment hint (default: natural for the access). */
  align?: number;
}

/** A block, loop or if label; pass it to {@link FunctionBuilder.br} / `brIf`. */
export interface Label {
  /** Position on the control stack (0 = outermost open construct). */
  readonly depth: number;
}
