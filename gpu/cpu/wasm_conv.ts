/**
 * im2col and col2im in WebAssembly for the CPU backend (the column layout of gpu/kernel.ts:
 * `cols [C*kh*kw, N*OH*OW]`). The geometry is baked in and the kernel-tap loops are unrolled, so
 * for every tap the range of output columns that reads inside the image is a constant: those
 * runs are copied (stride 1: `memory.copy`; stride 2: two vector loads and a shuffle per four
 * values) and the rest filled with zeros, with no test per element. col2im adds each tap's runs
 * into the image in the same order as the JavaScript kernel (taps ascending), so both give the
 * same bits. Exports `k(src, dst)` (byte addresses).
 * @module
 */

import type { ConvGeometry } from "../kernel.ts";
import { SIMD, simd } from "./mathf.ts";
import { type FunctionBuilder, ModuleBuilder } from "./wasm_builder.ts";

/** For tap column offset `kj`: the window positions `ow` in [lo, hi) that read inside the image. */
function validRange(g: ConvGeometry, kj: number): [number, number] {
  const shift = kj * g.dilationW - g.padLeft; // iw = ow * strideW + shift
  let lo = 0;
  while (lo < g.outW && lo * g.strideW + shift < 0) lo++;
  let hi = g.outW;
  while (hi > lo && (hi - 1) * g.strideW + shift >= g.w) hi--;
  return [lo, hi];
}

/** `for (i = 0; i < n; i++) body()` with counter local `i`. */
function repeat(f: FunctionBuilder, i: number, n: number, body: () => void): void {
  if (n <= 0) return;
  f.i32Const(0).localSet(i);
  f.loop((top) => {
    body();
    f.localGet(i).i32Const(1).i32Add().localTee(i);
    f.i32Const(n).i32LtU().brIf(top);
  });
}

/** Adds `bytes` to local `p`. */
function bump(f: FunctionBuilder, p: number, bytes: number): void {
  if (bytes) f.localGet(p).i32Const(bytes).i32Add().localSet(p);
}

/**
 * Copies `count` f32 from local `src` (stride `stride` elements) to local `dst` (contiguous),
 * advancing neither pointer.
 */
function gatherRun(f: FunctionBuilder, src: number, dst: number, count: number, stride: number) {
  if (count <= 0) return;
  if (stride === 1) {
    f.localGet(dst).localGet(src).i32Const(4 * count).memoryCopy();
    return;
  }
  let done = 0;
  if (stride === 2) {
    // Four values from two vector loads: lanes 0, 2 of each.
    for (; done + 4 <= count && 2 * (done + 3) + 1 < 2 * count; done += 4) {
      f.localGet(dst);
      f.localGet(src);
      simd(f, SIMD.load).raw(0, 8 * done);
      f.localGet(src);
      simd(f, SIMD.load).raw(0, 8 * done + 16);
      f.i8x16Shuffle([0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]);
      simd(f, SIMD.store).raw(0, 4 * done);
    }
  }
  for (; done < count; done++) {
    f.localGet(dst);
    f.localGet(src).f32Load({ offset: 4 * stride * done, align: 2 });
    f.f32Store({ offset: 4 * done, align: 2 });
  }
}

/** Fills `count` f32 at local `dst` + `at` elements with zeros. */
function zeros(f: FunctionBuilder, dst: number, at: number, count: number): void {
  if (count <= 0) return;
  f.localGet(dst).i32Const(4 * at).i32Add().i32Const(0).i32Const(4 * count).memoryFill();
}

/** Module of im2col over `g`: `k(x, cols)`. */
export function buildIm2colModule(g: ConvGeometry): Uint8Array {
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  const plane = 4 * g.h * g.w;
  mb.addFunction("k", ["i32", "i32"], [], (f) => {
    const [x, q] = [0, 1];
    const c = f.local("i32"), nn = f.local("i32"), oh = f.local("i32");
    const xc = f.local("i32"), xn = f.local("i32"), src = f.local("i32");
    f.localGet(x).localSet(xc);
    repeat(f, c, g.c, () => {
      for (let ki = 0; ki < g.kh; ki++) {
        for (let kj = 0; kj < g.kw; kj++) {
          const [lo, hi] = validRange(g, kj);
          f.localGet(xc).localSet(xn);
          repeat(f, nn, g.n, () => {
            for (let o = 0; o < g.outH; o++) {
              const ih = o * g.strideH - g.padTop + ki * g.dilationH;
              if (ih < 0 || ih >= g.h) zeros(f, q, 0, g.outW);
              else {
                zeros(f, q, 0, lo);
                const start = 4 * (ih * g.w + lo * g.strideW + kj * g.dilationW - g.padLeft);
                f.localGet(xn).i32Const(start).i32Add().localSet(src);
                f.localGet(q).i32Const(4 * lo).i32Add().localSet(oh);
                gatherRun(f, src, oh, hi - lo, g.strideW);
                zeros(f, q, hi, g.outW - hi);
              }
              bump(f, q, 4 * g.outW);
            }
            bump(f, xn, g.c * plane);
          });
        }
      }
      bump(f, xc, plane);
    });
  });
  return mb.build();
}

/** Module of col2im over `g`: `k(cols, x)`: the image is zeroed, then each tap's runs added. */
export function buildCol2imModule(g: ConvGeometry): Uint8Array {
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  const plane = 4 * g.h * g.w;
  mb.addFunction("k", ["i32", "i32"], [], (f) => {
    const [q, x] = [0, 1];
    const c = f.local("i32"), nn = f.local("i32"), j = f.local("i32");
    const xc = f.local("i32"), xn = f.local("i32"), dst = f.local("i32"), src = f.local("i32");
    f.localGet(x).i32Const(0).i32Const(g.n * g.c * plane).memoryFill();
    f.localGet(x).localSet(xc);
    repeat(f, c, g.c, () => {
      for (let ki = 0; ki < g.kh; ki++) {
        for (let kj = 0; kj < g.kw; kj++) {
          const [lo, hi] = validRange(g, kj);
          f.localGet(xc).localSet(xn);
          repeat(f, nn, g.n, () => {
            for (let o = 0; o < g.outH; o++) {
              const ih = o * g.strideH - g.padTop + ki * g.dilationH;
              if (ih >= 0 && ih < g.h && hi > lo) {
                const start = 4 * (ih * g.w + lo * g.strideW + kj * g.dilationW - g.padLeft);
                f.localGet(xn).i32Const(start).i32Add().localSet(dst);
                f.localGet(q).i32Const(4 * lo).i32Add().localSet(src);
                const n = hi - lo;
                let done = 0;
                if (g.strideW === 1) {
                  for (; done + 4 <= n; done += 4) {
                    f.localGet(dst);
                    f.localGet(dst);
                    simd(f, SIMD.load).raw(0, 4 * done);
                    f.localGet(src);
                    simd(f, SIMD.load).raw(0, 4 * done);
                    simd(f, SIMD.f32x4Add);
                    simd(f, SIMD.store).raw(0, 4 * done);
                  }
                }
                if (n - done > 8) {
                  // A loop for long strided runs keeps the code small.
                  const rest = n - done;
                  bump(f, dst, 4 * g.strideW * done);
                  bump(f, src, 4 * done);
                  repeat(f, j, rest, () => {
                    f.localGet(dst);
                    f.localGet(dst).f32Load({ align: 2 });
                    f.localGet(src).f32Load({ align: 2 });
                    f.f32Add();
                    f.f32Store({ align: 2 });
                    bump(f, dst, 4 * g.strideW);
                    bump(f, src, 4);
                  });
                } else {
                  for (; done < n; done++) {
                    f.localGet(dst);
                    f.localGet(dst).f32Load({ offset: 4 * g.strideW * done, align: 2 });
                    f.localGet(src).f32Load({ offset: 4 * done, align: 2 });
                    f.f32Add();
                    f.f32Store({ offset: 4 * g.strideW * done, align: 2 });
                  }
                }
              }
              bump(f, q, 4 * g.outW);
            }
            bump(f, xn, g.c * plane);
          });
        }
      }
      bump(f, xc, plane);
    });
  });
  return mb.build();
}
