/**
 * The packed GEMM path's functions (gpu/cpu/gemm.ts): the MR x NR micro-kernel, the scalar
 * epilogue, panel packing (vector copies and 4 x 4 transposes) and the edge-tile merge.
 * @module
 */

import type { FunctionBuilder, ModuleBuilder, ValType } from "./wasm_builder.ts";
import { ACC, BIAS_COL, BIAS_ROW, type Config, LEAKY, RELU } from "./gemm_config.ts";
import { addTo, emitTileStore, fma, forLoop, minI32, shuffle32 } from "./gemm_emit.ts";

/**
 * Scalar epilogue for one element: `x` (f32 local) goes to `cAddr` with the flags' accumulate,
 * bias (row bias at `biasRow`, column bias at `biasCol`) and activation. Emitted as a function.
 */
export function defineEpilogueScalar(mb: ModuleBuilder): number {
  // (x f32, cAddr, flags, biasRow, biasCol, slope f32)
  const params: ValType[] = ["f32", "i32", "i32", "i32", "i32", "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [x, c, flags, br, bc, slope] = [0, 1, 2, 3, 4, 5];
    f.localGet(flags).i32Const(ACC).i32And();
    f.if(() => f.localGet(x).localGet(c).f32Load().f32Add().localSet(x));
    f.localGet(flags).i32Const(BIAS_ROW).i32And();
    f.if(() => f.localGet(x).localGet(br).f32Load().f32Add().localSet(x));
    f.localGet(flags).i32Const(BIAS_COL).i32And();
    f.if(() => f.localGet(x).localGet(bc).f32Load().f32Add().localSet(x));
    f.localGet(flags).i32Const(RELU).i32And();
    f.if(() => f.localGet(x).f32Const(0).f32Max().localSet(x));
    f.localGet(flags).i32Const(LEAKY).i32And();
    f.if(() => {
      f.localGet(x).localGet(x).localGet(slope).f32Mul();
      f.localGet(x).f32Const(0).f32Gt().select().localSet(x);
    });
    f.localGet(c).localGet(x).f32Store();
  });
}

/**
 * The micro-kernel: (pa, pb, kc, c, ldcB, flags, biasRow, biasCol, slope). `pa` is an MR x kc
 * panel ([p][MR]), `pb` a kc x NR panel ([p][NR]); the MR x NR result goes to `c`.
 */
export function defineMicroKernel(mb: ModuleBuilder, cfg: Config, rows = cfg.mr): number {
  const params: ValType[] = ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [pa, pb, kc, c, ldcB, flags, biasRow, biasCol, slope] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    const { mr, nr, unroll, relaxed } = cfg;
    const nv = nr / 4;
    const acc = Array.from(
      { length: rows },
      () => Array.from({ length: nv }, () => f.local("v128")),
    );
    const bv = Array.from({ length: nv }, () => f.local("v128"));
    const av = f.local("v128");
    const n = f.local("i32");
    const row = f.local("i32");
    const step = (u: number) => {
      for (let v = 0; v < nv; v++) {
        f.localGet(pb).v128Load({ offset: 4 * (u * nr + 4 * v) }).localSet(bv[v]);
      }
      for (let r = 0; r < rows; r++) {
        f.localGet(pa).v128Load32Splat({ offset: 4 * (u * mr + r) }).localSet(av);
        for (let v = 0; v < nv; v++) fma(f, relaxed, acc[r][v], av, bv[v]);
      }
    };
    f.localGet(kc).localSet(n);
    // Unrolled main loop.
    f.block((out) => {
      f.loop((top) => {
        f.localGet(n).i32Const(unroll).i32LtS().brIf(out);
        for (let u = 0; u < unroll; u++) step(u);
        addTo(f, pa, 4 * mr * unroll);
        addTo(f, pb, 4 * nr * unroll);
        addTo(f, n, -unroll);
        f.br(top);
      });
    });
    // Remainder.
    f.block((out) => {
      f.loop((top) => {
        f.localGet(n).i32Eqz().brIf(out);
        step(0);
        addTo(f, pa, 4 * mr);
        addTo(f, pb, 4 * nr);
        addTo(f, n, -1);
        f.br(top);
      });
    });
    emitTileStore(f, acc, { c, ldcB, flags, biasRow, biasCol, slope, row });
  });
}

/**
 * Copies `width` consecutive f32 from [src] to [dst] with v128 / i64 / f32 moves.
 */
function emitCopyFloats(f: FunctionBuilder, src: number, dst: number, width: number): void {
  let o = 0;
  while (width - o >= 4) {
    f.localGet(dst).localGet(src).v128Load({ offset: 4 * o }).v128Store({ offset: 4 * o });
    o += 4;
  }
  if (width - o >= 2) {
    f.localGet(dst).localGet(src).i64Load({ offset: 4 * o }).i64Store({ offset: 4 * o });
    o += 2;
  }
  if (width - o >= 1) {
    f.localGet(dst).localGet(src).f32Load({ offset: 4 * o }).f32Store({ offset: 4 * o });
    o += 1;
  }
}

/**
 * Packs one full panel of `w` lines whose elements are contiguous along p (stepB = 4: rows of
 * a row-major A, columns of a transposed B): 4 x 4 blocks are loaded as four vectors (one per
 * line), transposed with shuffles and stored as four p-rows of the panel; a 2-line remainder
 * (w = 6) is interleaved into 64-bit pairs; leftover p (kc % 4) are copied one by one.
 */
function emitTransposePack(
  f: FunctionBuilder,
  x: { src: number; lineB: number; kc: number; dst: number; l0: number; d: number },
  w: number,
): void {
  const lp = Array.from({ length: w }, () => f.local("i32"));
  const r = Array.from({ length: 4 }, () => f.local("v128"));
  const t = Array.from({ length: 4 }, () => f.local("v128"));
  const off = f.local("i32");
  const n = f.local("i32");
  // lp[l] = src + (l0 + l) * lineB
  f.localGet(x.src).localGet(x.l0).localGet(x.lineB).i32Mul().i32Add().localSet(lp[0]);
  for (let l = 1; l < w; l++) f.localGet(lp[l - 1]).localGet(x.lineB).i32Add().localSet(lp[l]);
  f.i32Const(0).localSet(off);
  f.localGet(x.dst).localSet(x.d);
  f.localGet(x.kc).i32Const(2).i32ShrU().localSet(n);
  const load = (v: number, line: number) =>
    f.localGet(lp[line]).localGet(off).i32Add().v128Load().localSet(v);
  const shuf = (dst: number, a: number, b: number, lanes: number[]) => {
    f.localGet(a).localGet(b);
    shuffle32(f, lanes);
    f.localSet(dst);
  };
  f.block((out) => {
    f.loop((top) => {
      f.localGet(n).i32Eqz().brIf(out);
      for (let g = 0; g + 4 <= w; g += 4) {
        for (let i = 0; i < 4; i++) load(r[i], g + i);
        shuf(t[0], r[0], r[1], [0, 4, 1, 5]);
        shuf(t[1], r[0], r[1], [2, 6, 3, 7]);
        shuf(t[2], r[2], r[3], [0, 4, 1, 5]);
        shuf(t[3], r[2], r[3], [2, 6, 3, 7]);
        const rows: [number, number, number[]][] = [
          [t[0], t[2], [0, 1, 4, 5]],
          [t[0], t[2], [2, 3, 6, 7]],
          [t[1], t[3], [0, 1, 4, 5]],
          [t[1], t[3], [2, 3, 6, 7]],
        ];
        rows.forEach(([a, b, lanes], q) => {
          f.localGet(x.d).localGet(a).localGet(b);
          shuffle32(f, lanes);
          f.v128Store({ offset: 4 * (q * w + g) });
        });
      }
      const g = w - (w % 4);
      if (w % 4 === 2) {
        load(r[0], g);
        load(r[1], g + 1);
        shuf(t[0], r[0], r[1], [0, 4, 1, 5]); // p0 pair, p1 pair
        shuf(t[1], r[0], r[1], [2, 6, 3, 7]); // p2 pair, p3 pair
        for (let q = 0; q < 4; q++) {
          f.localGet(x.d).localGet(t[q >> 1]).v128Store64Lane(q & 1, { offset: 4 * (q * w + g) });
        }
      } else if (w % 4 !== 0) {
        for (let q = 0; q < 4; q++) {
          for (let l = g; l < w; l++) {
            f.localGet(x.d).localGet(lp[l]).localGet(off).i32Add().f32Load({ offset: 4 * q });
            f.f32Store({ offset: 4 * (q * w + l) });
          }
        }
      }
      addTo(f, off, 16);
      addTo(f, x.d, 16 * w);
      addTo(f, n, -1);
      f.br(top);
    });
  });
  // kc % 4 leftover p.
  f.localGet(x.kc).i32Const(3).i32And().localSet(n);
  f.block((out) => {
    f.loop((top) => {
      f.localGet(n).i32Eqz().brIf(out);
      for (let l = 0; l < w; l++) {
        f.localGet(x.d).localGet(lp[l]).localGet(off).i32Add().f32Load();
        f.f32Store({ offset: 4 * l });
      }
      addTo(f, off, 4);
      addTo(f, x.d, 4 * w);
      addTo(f, n, -1);
      f.br(top);
    });
  });
}

/**
 * Packs panels of `w` lines (rows of A, or columns of B): (src, lineB, stepB, lines, kc, dst).
 * Element (line l, p) is at src + l*lineB + p*stepB; panel q holds lines [q*w, q*w + w) as
 * [p][w], zero-padded past `lines`. When lineB = 4 (lines adjacent in memory) full panels are
 * copied with vector moves.
 */
export function definePack(mb: ModuleBuilder, w: number): number {
  const params: ValType[] = ["i32", "i32", "i32", "i32", "i32", "i32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [src, lineB, stepB, lines, kc, dst] = [0, 1, 2, 3, 4, 5];
    const l0 = f.local("i32");
    const cnt = f.local("i32");
    const l = f.local("i32");
    const s = f.local("i32");
    const d = f.local("i32");
    const p = f.local("i32");
    const panelB = f.local("i32");
    const t1 = f.local("i32");
    const t2 = f.local("i32");
    f.localGet(kc).i32Const(4 * w).i32Mul().localSet(panelB);
    forLoop(f, l0, () => f.i32Const(0), () => f.localGet(lines), w, () => {
      // cnt = min(w, lines - l0)
      minI32(f, t1, t2, () => f.i32Const(w), () => f.localGet(lines).localGet(l0).i32Sub());
      f.localSet(cnt);
      f.localGet(cnt).i32Const(w).i32Eq().localGet(lineB).i32Const(4).i32Eq().i32And();
      f.if(() => {
        // Adjacent lines: copy w floats per p.
        f.localGet(src).localGet(l0).i32Const(4).i32Mul().i32Add().localSet(s);
        f.localGet(dst).localSet(d);
        forLoop(f, p, () => f.i32Const(0), () => f.localGet(kc), 1, () => {
          emitCopyFloats(f, s, d, w);
          addTo(f, s, () => f.localGet(stepB));
          addTo(f, d, 4 * w);
        });
      }, () => {
        f.localGet(cnt).i32Const(w).i32Eq().localGet(stepB).i32Const(4).i32Eq().i32And();
        f.if(() => emitTransposePack(f, { src, lineB, kc, dst, l0, d }, w), () => {
          f.localGet(cnt).i32Const(w).i32Ne();
          f.if(() => {
            f.localGet(dst).i32Const(0).localGet(panelB).memoryFill();
          });
          forLoop(f, l, () => f.i32Const(0), () => f.localGet(cnt), 1, () => {
            // s = src + (l0 + l) * lineB; d = dst + 4 l
            f.localGet(src).localGet(l0).localGet(l).i32Add().localGet(lineB).i32Mul().i32Add();
            f.localSet(s);
            f.localGet(dst).localGet(l).i32Const(4).i32Mul().i32Add().localSet(d);
            // Unrolled by 4 along p.
            f.localGet(kc).localSet(p);
            f.block((out) => {
              f.loop((top) => {
                f.localGet(p).i32Const(4).i32LtS().brIf(out);
                for (let u = 0; u < 4; u++) {
                  f.localGet(d).localGet(s).f32Load().f32Store({ offset: 4 * w * u });
                  addTo(f, s, () => f.localGet(stepB));
                }
                addTo(f, d, 16 * w);
                addTo(f, p, -4);
                f.br(top);
              });
            });
            f.block((out) => {
              f.loop((top) => {
                f.localGet(p).i32Eqz().brIf(out);
                f.localGet(d).localGet(s).f32Load().f32Store();
                addTo(f, s, () => f.localGet(stepB));
                addTo(f, d, 4 * w);
                addTo(f, p, -1);
                f.br(top);
              });
            });
          });
        });
      });
      addTo(f, dst, () => f.localGet(panelB));
    });
  });
}

/**
 * Scalar merge of an edge tile: (tmp, c, ldcB, rows, cols, flags, biasRow, biasCol, slope);
 * tmp is [MR][NR] contiguous.
 */
export function defineMerge(mb: ModuleBuilder, cfg: Config, epi: number): number {
  const params: ValType[] = ["i32", "i32", "i32", "i32", "i32", "i32", "i32", "i32", "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [tmp, c, ldcB, rows, cols, flags, biasRow, biasCol, slope] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    const r = f.local("i32");
    const j = f.local("i32");
    forLoop(f, r, () => f.i32Const(0), () => f.localGet(rows), 1, () => {
      forLoop(f, j, () => f.i32Const(0), () => f.localGet(cols), 1, () => {
        // x = tmp[r*NR + j]
        f.localGet(tmp).localGet(r).i32Const(cfg.nr).i32Mul().localGet(j).i32Add();
        f.i32Const(4).i32Mul().i32Add().f32Load();
        f.localGet(c).localGet(r).localGet(ldcB).i32Mul().i32Add();
        f.localGet(j).i32Const(4).i32Mul().i32Add();
        f.localGet(flags);
        f.localGet(biasRow).localGet(r).i32Const(4).i32Mul().i32Add();
        f.localGet(biasCol).localGet(j).i32Const(4).i32Mul().i32Add();
        f.localGet(slope);
        f.call(epi);
      });
    });
  });
}
