/**
 * The unpacked GEMM paths' functions (gpu/cpu/gemm.ts): direct register tiles that read A and B
 * in place, and dot-product tiles for operands contiguous along the inner dimension.
 * @module
 */

import type { ModuleBuilder, ValType } from "./wasm_builder.ts";
import type { Config } from "./gemm_config.ts";
import { addTo, emitTileStore, fma, i32s, indices, shuffle32 } from "./gemm_emit.ts";

/**
 * Direct tile (no packing) of `rows` x 4*nv: (a, saiB, sapB, b, sbpB, k, c, ldcB, flags,
 * biasRow, biasCol, slope). A element (r, p) at a + r*saiB + p*sapB; B row p at b + p*sbpB,
 * columns contiguous.
 */
export function defineDirectTile(mb: ModuleBuilder, cfg: Config, rows: number, nv: number): number {
  const params: ValType[] = [...i32s(11), "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [a, saiB, sapB, b, sbpB, k, c, ldcB, flags, biasRow, biasCol, slope] = indices(12);
    const acc = Array.from(
      { length: rows },
      () => Array.from({ length: nv }, () => f.local("v128")),
    );
    const bv = Array.from({ length: nv }, () => f.local("v128"));
    const av = f.local("v128");
    const ap = Array.from({ length: rows }, () => f.local("i32"));
    const n = f.local("i32");
    const row = f.local("i32");
    f.localGet(a).localSet(ap[0]);
    for (let r = 1; r < rows; r++) f.localGet(ap[r - 1]).localGet(saiB).i32Add().localSet(ap[r]);
    f.localGet(k).localSet(n);
    f.block((out) => {
      f.loop((top) => {
        f.localGet(n).i32Eqz().brIf(out);
        for (let v = 0; v < nv; v++) f.localGet(b).v128Load({ offset: 16 * v }).localSet(bv[v]);
        for (let r = 0; r < rows; r++) {
          f.localGet(ap[r]).v128Load32Splat().localSet(av);
          for (let v = 0; v < nv; v++) fma(f, cfg.relaxed, acc[r][v], av, bv[v]);
          addTo(f, ap[r], () => f.localGet(sapB));
        }
        addTo(f, b, () => f.localGet(sbpB));
        addTo(f, n, -1);
        f.br(top);
      });
    });
    emitTileStore(f, acc, { c, ldcB, flags, biasRow, biasCol, slope, row });
  });
}
/**
 * Dot-product tile for A rows and B columns both contiguous along p (sap = 1, sbp = 1):
 * (a, saiB, b, sbjB, k, c, ldcB, flags, biasRow, biasCol, slope). `a` is A[i, p0], `b` is
 * B[p0, j]; computes a rows x cols block (cols 4 or 1) of dot products of length k, vectorized
 * along p, then reduces horizontally.
 */
export function defineDotTile(
  mb: ModuleBuilder,
  cfg: Config,
  rows: number,
  cols: number,
  epi: number,
): number {
  const params: ValType[] = [...i32s(10), "f32"];
  return mb.addFunction(undefined, params, [], (f) => {
    const [a, saiB, b, sbjB, k, c, ldcB, flags, biasRow, biasCol, slope] = indices(11);
    const acc = Array.from(
      { length: rows },
      () => Array.from({ length: cols }, () => f.local("v128")),
    );
    const av = Array.from({ length: rows }, () => f.local("v128"));
    const bv = f.local("v128");
    const ar = Array.from({ length: rows }, () => f.local("i32"));
    const bc = Array.from({ length: cols }, () => f.local("i32"));
    const off = f.local("i32");
    const n = f.local("i32");
    const row = f.local("i32");
    f.localGet(a).localSet(ar[0]);
    for (let r = 1; r < rows; r++) f.localGet(ar[r - 1]).localGet(saiB).i32Add().localSet(ar[r]);
    f.localGet(b).localSet(bc[0]);
    for (let j = 1; j < cols; j++) f.localGet(bc[j - 1]).localGet(sbjB).i32Add().localSet(bc[j]);
    const chunk = (u: number) => {
      for (let r = 0; r < rows; r++) {
        f.localGet(ar[r]).localGet(off).i32Add().v128Load({ offset: 16 * u }).localSet(av[r]);
      }
      for (let j = 0; j < cols; j++) {
        f.localGet(bc[j]).localGet(off).i32Add().v128Load({ offset: 16 * u }).localSet(bv);
        for (let r = 0; r < rows; r++) fma(f, cfg.relaxed, acc[r][j], av[r], bv);
      }
    };
    f.localGet(k).i32Const(2).i32ShrU().localSet(n);
    f.block((out) => {
      f.loop((top) => {
        f.localGet(n).i32Const(2).i32LtU().brIf(out);
        chunk(0);
        chunk(1);
        addTo(f, off, 32);
        addTo(f, n, -2);
        f.br(top);
      });
    });
    f.localGet(n);
    f.if(() => {
      chunk(0);
      addTo(f, off, 16);
    });
    // k % 4 leftover elements: n counts them down.
    f.localGet(k).i32Const(3).i32And().localSet(n);
    if (cols === 4) {
      // Transpose-add the four accumulators of each row into one vector of four dot products.
      const t = f.local("v128");
      for (let r = 0; r < rows; r++) {
        const [x0, x1, x2, x3] = acc[r];
        f.localGet(x0).localGet(x1);
        shuffle32(f, [0, 4, 1, 5]);
        f.localGet(x0).localGet(x1);
        shuffle32(f, [2, 6, 3, 7]);
        f.f32x4Add().localSet(t); // [x0a, x1a, x0b, x1b]
        f.localGet(x2).localGet(x3);
        shuffle32(f, [0, 4, 1, 5]);
        f.localGet(x2).localGet(x3);
        shuffle32(f, [2, 6, 3, 7]);
        f.f32x4Add().localSet(x1); // [x2a, x3a, x2b, x3b]
        f.localGet(t).localGet(x1);
        shuffle32(f, [0, 1, 4, 5]);
        f.localGet(t).localGet(x1);
        shuffle32(f, [2, 3, 6, 7]);
        f.f32x4Add().localSet(x0);
      }
      f.block((out) => {
        f.loop((top) => {
          f.localGet(n).i32Eqz().brIf(out);
          f.localGet(bc[0]).localGet(off).i32Add().f32Load().f32x4Splat();
          for (let j = 1; j < 4; j++) {
            f.localGet(bc[j]).localGet(off).i32Add().f32Load().f32x4ReplaceLane(j);
          }
          f.localSet(bv);
          for (let r = 0; r < rows; r++) {
            f.localGet(ar[r]).localGet(off).i32Add().v128Load32Splat().localSet(av[r]);
            fma(f, cfg.relaxed, acc[r][0], av[r], bv);
          }
          addTo(f, off, 4);
          addTo(f, n, -1);
          f.br(top);
        });
      });
      emitTileStore(f, acc.map((x) => [x[0]]), { c, ldcB, flags, biasRow, biasCol, slope, row });
    } else {
      const s = Array.from({ length: rows }, () => f.local("f32"));
      for (let r = 0; r < rows; r++) {
        const x = acc[r][0];
        f.localGet(x).f32x4ExtractLane(0).localGet(x).f32x4ExtractLane(1).f32Add();
        f.localGet(x).f32x4ExtractLane(2).localGet(x).f32x4ExtractLane(3).f32Add();
        f.f32Add().localSet(s[r]);
      }
      f.block((out) => {
        f.loop((top) => {
          f.localGet(n).i32Eqz().brIf(out);
          for (let r = 0; r < rows; r++) {
            f.localGet(ar[r]).localGet(off).i32Add().f32Load();
            f.localGet(bc[0]).localGet(off).i32Add().f32Load().f32Mul();
            f.localGet(s[r]).f32Add().localSet(s[r]);
          }
          addTo(f, off, 4);
          addTo(f, n, -1);
          f.br(top);
        });
      });
      for (let r = 0; r < rows; r++) {
        f.localGet(s[r]);
        f.localGet(c).localGet(ldcB).i32Const(r).i32Mul().i32Add();
        f.localGet(flags);
        f.localGet(biasRow).i32Const(4 * r).i32Add();
        f.localGet(biasCol);
        f.localGet(slope);
        f.call(epi);
      }
    }
  });
}

/** Scalar dot product (a, sapB, b, sbpB, k) -> f32. */
export function defineDot(mb: ModuleBuilder): number {
  return mb.addFunction(undefined, ["i32", "i32", "i32", "i32", "i32"], ["f32"], (f) => {
    const [a, sapB, b, sbpB, k] = [0, 1, 2, 3, 4];
    const s = f.local("f32");
    f.block((out) => {
      f.loop((top) => {
        f.localGet(k).i32Eqz().brIf(out);
        f.localGet(a).f32Load().localGet(b).f32Load().f32Mul().localGet(s).f32Add().localSet(s);
        addTo(f, a, () => f.localGet(sapB));
        addTo(f, b, () => f.localGet(sbpB));
        addTo(f, k, -1);
        f.br(top);
      });
    });
    f.localGet(s);
  });
}
