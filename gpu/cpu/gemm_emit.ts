/**
 * Code-emission helpers shared by the GEMM kernels (gpu/cpu/gemm.ts): loops, min, increments,
 * FMA, lane shuffles and the tile store with its fused epilogue.
 * @module
 */

import type { FunctionBuilder, ValType } from "./wasm_builder.ts";
import { ACC, BIAS_COL, BIAS_ROW, LEAKY, RELU } from "./gemm_config.ts";

// ---- codegen helpers ------------------------------------------------------------------------

/** n i32 parameter types. */
export function i32s(n: number): ValType[] {
  return Array.from({ length: n }, () => "i32");
}

/** [0, 1, ..., n - 1]: parameter indices to destructure into names. */
export function indices(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** `for (i = start; i < end; i += step) body()`, start/end pushed by callbacks. */
export function forLoop(
  f: FunctionBuilder,
  i: number,
  start: () => void,
  end: () => void,
  step: number | (() => void),
  body: () => void,
): void {
  start();
  f.localSet(i);
  f.block((out) => {
    f.loop((top) => {
      f.localGet(i);
      end();
      f.i32GeS().brIf(out);
      body();
      f.localGet(i);
      if (typeof step === "number") f.i32Const(step);
      else step();
      f.i32Add().localSet(i);
      f.br(top);
    });
  });
}

/** Pushes min(a, b) of two i32 locals... or of pushes: a and b via callbacks (signed). */
export function minI32(
  f: FunctionBuilder,
  tmpA: number,
  tmpB: number,
  a: () => void,
  b: () => void,
) {
  a();
  f.localSet(tmpA);
  b();
  f.localSet(tmpB);
  f.localGet(tmpA).localGet(tmpB).localGet(tmpA).localGet(tmpB).i32LtS().select();
}

/** local += delta (delta pushed by a callback, or a constant). */
export function addTo(f: FunctionBuilder, local: number, delta: number | (() => void)): void {
  f.localGet(local);
  if (typeof delta === "number") f.i32Const(delta);
  else delta();
  f.i32Add().localSet(local);
}

/** acc = a * b + acc (a, b, acc: v128 locals). */
export function fma(f: FunctionBuilder, relaxed: boolean, acc: number, a: number, b: number): void {
  if (relaxed) f.localGet(a).localGet(b).localGet(acc).f32x4RelaxedMadd();
  else f.localGet(a).localGet(b).f32x4Mul().localGet(acc).f32x4Add();
  f.localSet(acc);
}

/**
 * Stores a rows x (4*nv) tile of accumulators (`acc[r][v]`) to `c` (row stride `ldcB` bytes)
 * with the flag-selected epilogue. `rowLocal` is a scratch i32 local. Fast paths for flags = 0
 * (store) and flags = ACCUMULATE (add and store); everything else takes the general path.
 */
export function emitTileStore(
  f: FunctionBuilder,
  acc: number[][],
  p: {
    c: number;
    ldcB: number;
    flags: number;
    biasRow: number;
    biasCol: number;
    slope: number;
    row: number;
  },
): void {
  const rows = acc.length;
  const nv = acc[0].length;
  const eachRow = (body: (r: number) => void) => {
    f.localGet(p.c).localSet(p.row);
    for (let r = 0; r < rows; r++) {
      body(r);
      if (r < rows - 1) addTo(f, p.row, () => f.localGet(p.ldcB));
    }
  };
  const plainStore = () =>
    eachRow((r) => {
      for (let v = 0; v < nv; v++) {
        f.localGet(p.row).localGet(acc[r][v]).v128Store({ offset: 16 * v });
      }
    });
  const accStore = () =>
    eachRow((r) => {
      for (let v = 0; v < nv; v++) {
        f.localGet(p.row);
        f.localGet(p.row).v128Load({ offset: 16 * v }).localGet(acc[r][v]).f32x4Add();
        f.v128Store({ offset: 16 * v });
      }
    });
  const general = () => {
    const slopeV = f.local("v128");
    const zero = f.local("v128"); // never written: zero
    const rb = f.local("v128");
    f.localGet(p.slope).f32x4Splat().localSet(slopeV);
    eachRow((r) => {
      // Row bias (or zero): one splat per row.
      f.localGet(p.flags).i32Const(BIAS_ROW).i32And();
      f.if(() => {
        f.localGet(p.biasRow).v128Load32Splat({ offset: 4 * r }).localSet(rb);
      });
      for (let v = 0; v < nv; v++) {
        const x = acc[r][v];
        f.localGet(p.flags).i32Const(ACC).i32And();
        f.if(() => {
          f.localGet(x).localGet(p.row).v128Load({ offset: 16 * v }).f32x4Add().localSet(x);
        });
        f.localGet(p.flags).i32Const(BIAS_ROW).i32And();
        f.if(() => {
          f.localGet(x).localGet(rb).f32x4Add().localSet(x);
        });
        f.localGet(p.flags).i32Const(BIAS_COL).i32And();
        f.if(() => {
          f.localGet(x).localGet(p.biasCol).v128Load({ offset: 16 * v }).f32x4Add().localSet(x);
        });
        f.localGet(p.flags).i32Const(RELU).i32And();
        f.if(() => {
          f.localGet(x).localGet(zero).f32x4Max().localSet(x);
        });
        f.localGet(p.flags).i32Const(LEAKY).i32And();
        f.if(() => {
          f.localGet(x).localGet(x).localGet(slopeV).f32x4Mul();
          f.localGet(x).localGet(zero).f32x4Gt().v128Bitselect().localSet(x);
        });
        f.localGet(p.row).localGet(x).v128Store({ offset: 16 * v });
      }
    });
  };
  f.localGet(p.flags);
  f.i32Eqz();
  f.if(plainStore, () => {
    f.localGet(p.flags).i32Const(ACC).i32Eq();
    f.if(accStore, general);
  });
}
/** Pushes the 32-bit-lane shuffle of two v128 values (lanes 0-3 from the first, 4-7 second). */
export function shuffle32(f: FunctionBuilder, lanes: readonly number[]): void {
  f.i8x16Shuffle(lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]));
}
