/**
 * Single-precision matrix multiply in generated WebAssembly SIMD128 (see gpu/cpu/wasm_builder.ts):
 * the CPU backend's matmul and im2col convolution kernel.
 *
 * The module imports `env.memory` (a shared `WebAssembly.Memory`) and exports one function,
 * `gemm`, over operands that live anywhere in that memory with arbitrary element strides:
 *
 * ```text
 * C[i*ldc + j] = (accumulate ? C[i*ldc + j] : 0) + sum_p A[i*sai + p*sap] * B[p*sbp + j*sbj]
 *   for i in [rowStart, rowEnd), j in [colStart, colEnd), p in [0, k)
 * ```
 *
 * then an optional fused epilogue (bias, activation). Pointers are byte addresses, strides are in
 * elements, so transposes are free: A row-major [M,K] is (sai=k, sap=1), A stored transposed
 * [K,M] is (sai=1, sap=m); B row-major [K,N] is (sbp=n, sbj=1), B stored transposed [N,K] is
 * (sbp=1, sbj=k). Several threads may run disjoint [rowStart,rowEnd) x [colStart,colEnd) blocks
 * of one product at once, each with its own scratch (`work`, {@link GEMM_WORK_BYTES} bytes).
 * See {@link GemmFn} for the exact argument list and {@link GemmKernel} for a typed wrapper.
 *
 * Three paths, chosen per call (flags can force one, for tests):
 *
 * - packed (the BLAS/BLIS scheme of Goto and van de Geijn, "Anatomy of high-performance matrix
 *   multiplication"): K is cut into blocks of KC (256), N into NC (2048), M into MC (120); each
 *   KC x NC block of B is packed into NR-wide panels ([p][NR], zero-padded), each MC x KC block
 *   of A into MR-tall panels ([p][MR]); lines contiguous in memory are copied with vector moves,
 *   lines contiguous along p (row-major A, transposed B) are transposed 4 x 4 with shuffles. An
 *   MR x NR = 6 x 8 register-blocked micro-kernel (12 f32x4 accumulators, k unrolled by 4) runs
 *   over each panel pair with `f32x4.relaxed_madd` (an FMA on x86-64 and ARM) or mul + add.
 *   Full-width tiles are stored straight into C with the epilogue (the last rows by kernels
 *   generated for 1 .. MR - 1 rows); narrower edge tiles go through a scratch tile and a scalar
 *   merge;
 * - direct, for B rows contiguous (sbj = 1) and few rows (<= 8) or little work (m n k <= 2^18):
 *   4 x 8 (and 1 x 32 for single rows) register tiles read A and B in place, no packing. This
 *   wins where each packed element would be used only a few times (matrix-vector products, an
 *   MLP at batch 32);
 * - dot, for A rows and B columns both contiguous along p (sap = sbp = 1: `x W^T`, `dY col^T`)
 *   with at most 128 columns or little work: 2 x 4 tiles of dot products vectorized along p,
 *   K blocked by 1024, reduced horizontally by shuffles (weight gradients with n = 25, n = 1
 *   matrix-vector products).
 *
 * Relaxed SIMD is used when the engine validates it ({@link relaxedSimdSupported}); results
 * then differ from the mul + add module in the last bits (one rounding per FMA instead of two).
 * @module
 */

import { ModuleBuilder } from "./wasm_builder.ts";
import {
  ACC,
  BIAS_COL,
  BIAS_ROW,
  type Config,
  EPILOGUE,
  GEMM_FLAGS,
  type GemmOptions,
  gemmWorkBytes,
  LEAKY,
  RELU,
  resolve,
} from "./gemm_config.ts";
import { addTo, forLoop, i32s, indices, minI32 } from "./gemm_emit.ts";
import { defineEpilogueScalar, defineMerge, defineMicroKernel, definePack } from "./gemm_packed.ts";
import { defineDirectTile, defineDot, defineDotTile } from "./gemm_small.ts";

// The flags and blocking parameters moved to gemm_config.ts; re-exported so `gemm.ts` stays the
// one module to import.
export { GEMM_FLAGS, GEMM_WORK_BYTES, type GemmOptions, gemmWorkBytes } from "./gemm_config.ts";

/** Generates the module bytes (see the module documentation for the exported `gemm`). */
export function buildGemmModule(opts: GemmOptions): Uint8Array {
  const cfg = resolve(opts);
  if (cfg.relaxed && !relaxedSimdSupported()) cfg.relaxed = false;
  return generate(cfg);
}

function generate(cfg: Config): Uint8Array {
  const mb = new ModuleBuilder();
  mb.importMemory({ min: cfg.minPages, max: cfg.maxPages, shared: true });
  const gemmIndex = mb.declareFunction();
  const epi = defineEpilogueScalar(mb);
  const kernel = defineMicroKernel(mb, cfg);
  // Kernels for the last, shorter row panel (rows 1 .. mr - 1 of an MR-tall packed panel).
  const shortKernels = Array.from(
    { length: cfg.mr - 1 },
    (_, r) => defineMicroKernel(mb, cfg, r + 1),
  );
  const packA = definePack(mb, cfg.mr);
  const packB = definePack(mb, cfg.nr);
  const merge = defineMerge(mb, cfg, epi);
  const DR = 4;
  const d42 = defineDirectTile(mb, cfg, DR, 2);
  const d41 = defineDirectTile(mb, cfg, DR, 1);
  const d18 = defineDirectTile(mb, cfg, 1, 8);
  const d12 = defineDirectTile(mb, cfg, 1, 2);
  const d11 = defineDirectTile(mb, cfg, 1, 1);
  const dot = defineDot(mb);
  const dot24 = defineDotTile(mb, cfg, 2, 4, epi);
  const dot21 = defineDotTile(mb, cfg, 2, 1, epi);
  const dot14 = defineDotTile(mb, cfg, 1, 4, epi);
  const dot11 = defineDotTile(mb, cfg, 1, 1, epi);

  mb.defineFunction(gemmIndex, "gemm", i32s(16), [], (f) => {
    const [a, sai, sap, b, sbp, sbj, c, ldc, k, r0, r1, c0, c1, flags, work, epiPtr] = indices(16);
    const bias = f.local("i32");
    const slope = f.local("f32");
    const locals = (n: number) => Array.from({ length: n }, () => f.local("i32"));
    const [rows, cols, saiB, sapB, sbpB, sbjB, ldcB] = locals(7);
    const [wA, wB, tmp, t1, t2] = locals(5);
    const [jc, nc, pc, kc, kflags, ic, mc, jr, nr, ir, mr] = locals(11);
    const [cptr, brow, bcol, ci, i, j, ai, bj] = locals(8);
    f.localGet(r1).localGet(r0).i32Sub().localSet(rows);
    f.localGet(c1).localGet(c0).i32Sub().localSet(cols);
    f.localGet(rows).i32Const(0).i32LeS().localGet(cols).i32Const(0).i32LeS().i32Or();
    f.if(() => f.return());
    // The epilogue descriptor: { bias byte address: i32, slope: f32 }, read before any packing
    // (so it may live at the start of the scratch block).
    f.localGet(flags).i32Const(EPILOGUE).i32And();
    f.if(() => {
      f.localGet(epiPtr).i32Load().localSet(bias);
      f.localGet(epiPtr).f32Load({ offset: 4 }).localSet(slope);
    });
    const bytes = (src: number, dst: number) => f.localGet(src).i32Const(4).i32Mul().localSet(dst);
    bytes(sai, saiB);
    bytes(sap, sapB);
    bytes(sbp, sbpB);
    bytes(sbj, sbjB);
    bytes(ldc, ldcB);

    // ---- path choice -------------------------------------------------------------------------
    // small = rows <= directRows or rows*cols*k <= directWork (i64: no overflow)
    const [small, useDirect, useDot] = locals(3);
    f.localGet(rows).i32Const(cfg.directRows).i32LeS();
    f.localGet(rows).i64ExtendI32U().localGet(cols).i64ExtendI32U().i64Mul();
    f.localGet(k).i64ExtendI32U().i64Mul().i64Const(cfg.directWork).i64LeU();
    f.i32Or().localSet(small);
    // direct: sbj == 1 and (FORCE_DIRECT or small)
    f.localGet(sbj).i32Const(1).i32Eq();
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_DIRECT).i32And().i32Const(0).i32Ne();
    f.localGet(small).i32Or().i32And().localSet(useDirect);
    // dot: sap == 1 and sbp == 1 and (FORCE_DOT or small or cols <= dotCols)
    f.localGet(sap).i32Const(1).i32Eq().localGet(sbp).i32Const(1).i32Eq().i32And();
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_DOT).i32And().i32Const(0).i32Ne();
    f.localGet(small).i32Or().localGet(cols).i32Const(cfg.dotCols).i32LeS().i32Or();
    f.i32And().localSet(useDot);
    // FORCE_PACKED wins; then FORCE_DOT, FORCE_DIRECT; unforced, a product narrower than 8
    // columns that both could take goes to dot (direct would do it with scalar columns).
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_PACKED).i32And();
    f.if(() => {
      f.i32Const(0).localSet(useDirect);
      f.i32Const(0).localSet(useDot);
    });
    f.localGet(useDot);
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_DOT).i32And().i32Const(0).i32Ne();
    f.localGet(cols).i32Const(8).i32LtS();
    f.localGet(flags).i32Const(GEMM_FLAGS.FORCE_DIRECT).i32And().i32Eqz().i32And();
    f.i32Or().i32And();
    f.if(() => f.i32Const(0).localSet(useDirect));

    // ---- dot path (A rows and B columns contiguous along p) ----------------------------------
    f.localGet(useDot).localGet(useDirect).i32Eqz().i32And();
    f.if(() => {
      const [kd, pd, kf] = locals(3);
      const call = (fn: number) => {
        // tile at rows r0+i, cols c0+j, p block [pd, pd+kd)
        f.localGet(a).localGet(r0).localGet(i).i32Add().localGet(saiB).i32Mul().i32Add();
        f.localGet(pd).i32Const(4).i32Mul().i32Add().localGet(saiB);
        f.localGet(b).localGet(c0).localGet(j).i32Add().localGet(sbjB).i32Mul().i32Add();
        f.localGet(pd).i32Const(4).i32Mul().i32Add().localGet(sbjB);
        f.localGet(kd);
        f.localGet(c).localGet(r0).localGet(i).i32Add().localGet(ldcB).i32Mul().i32Add();
        f.localGet(c0).localGet(j).i32Add().i32Const(4).i32Mul().i32Add().localGet(ldcB);
        f.localGet(kf);
        f.localGet(bias).localGet(r0).localGet(i).i32Add().i32Const(4).i32Mul().i32Add();
        f.localGet(bias).localGet(c0).localGet(j).i32Add().i32Const(4).i32Mul().i32Add();
        f.localGet(slope).call(fn);
      };
      const colsLoop = (wide: number, narrow: number) => {
        f.i32Const(0).localSet(j);
        f.block((out) => {
          f.loop((top) => {
            f.localGet(j).i32Const(4).i32Add().localGet(cols).i32GtS().brIf(out);
            call(wide);
            addTo(f, j, 4);
            f.br(top);
          });
        });
        f.block((out) => {
          f.loop((top) => {
            f.localGet(j).localGet(cols).i32GeS().brIf(out);
            call(narrow);
            addTo(f, j, 1);
            f.br(top);
          });
        });
      };
      f.i32Const(0).localSet(pd);
      f.loop((pdTop) => {
        minI32(f, t1, t2, () => f.i32Const(cfg.dotKc), () => f.localGet(k).localGet(pd).i32Sub());
        f.localSet(kd);
        f.localGet(flags).i32Const(ACC).i32And().i32Const(ACC).localGet(pd).i32Eqz().select();
        f.localGet(flags).i32Const(EPILOGUE).i32And().i32Const(0);
        f.localGet(pd).localGet(kd).i32Add().localGet(k).i32GeS().select();
        f.i32Or().localSet(kf);
        f.i32Const(0).localSet(i);
        f.block((out) => {
          f.loop((top) => {
            f.localGet(i).i32Const(2).i32Add().localGet(rows).i32GtS().brIf(out);
            colsLoop(dot24, dot21);
            addTo(f, i, 2);
            f.br(top);
          });
        });
        f.localGet(i).localGet(rows).i32LtS();
        f.if(() => colsLoop(dot14, dot11));
        addTo(f, pd, () => f.localGet(kd));
        f.localGet(pd).localGet(k).i32LtS().brIf(pdTop);
      });
      f.return();
    });

    // ---- direct path (B rows contiguous) -----------------------------------------------------
    f.localGet(useDirect);
    f.if(() => {
      const eflags = () => f.localGet(flags).i32Const(ACC | EPILOGUE).i32And();
      const tileCall = (fn: number, width: number) => {
        // a + i*saiB, sai.. ; b + j*4 ; c + i*ldcB + j*4
        f.localGet(ai).localGet(saiB).localGet(sapB);
        f.localGet(bj).localGet(j).i32Const(4).i32Mul().i32Add().localGet(sbpB).localGet(k);
        f.localGet(ci).localGet(j).i32Const(4).i32Mul().i32Add().localGet(ldcB);
        eflags();
        f.localGet(brow);
        f.localGet(bcol).localGet(j).i32Const(4).i32Mul().i32Add();
        f.localGet(slope);
        f.call(fn);
        addTo(f, j, width);
      };
      const scalarCols = (R: number) => {
        forLoop(f, t1, () => f.localGet(j), () => f.localGet(cols), 1, () => {
          for (let r = 0; r < R; r++) {
            f.localGet(ai).localGet(saiB).i32Const(r).i32Mul().i32Add().localGet(sapB);
            f.localGet(bj).localGet(t1).i32Const(4).i32Mul().i32Add().localGet(sbpB).localGet(k);
            f.call(dot);
            f.localGet(ci).localGet(ldcB).i32Const(r).i32Mul().i32Add();
            f.localGet(t1).i32Const(4).i32Mul().i32Add();
            eflags();
            f.localGet(brow).i32Const(4 * r).i32Add();
            f.localGet(bcol).localGet(t1).i32Const(4).i32Mul().i32Add();
            f.localGet(slope);
            f.call(epi);
          }
        });
      };
      const rowBlock = (R: number, wide: number, narrow: number, widest?: number) => {
        // a row pointer, c row pointer, bias row pointer for row i (absolute r0 + i)
        f.localGet(a).localGet(r0).localGet(i).i32Add().localGet(saiB).i32Mul().i32Add();
        f.localSet(ai);
        f.localGet(c).localGet(r0).localGet(i).i32Add().localGet(ldcB).i32Mul().i32Add();
        f.localGet(c0).i32Const(4).i32Mul().i32Add().localSet(ci);
        f.localGet(bias).localGet(r0).localGet(i).i32Add().i32Const(4).i32Mul().i32Add();
        f.localSet(brow);
        f.i32Const(0).localSet(j);
        if (widest !== undefined) {
          // Single rows: 32 columns per tile, so each B row read is two whole cache lines.
          f.block((out) => {
            f.loop((top) => {
              f.localGet(j).i32Const(32).i32Add().localGet(cols).i32GtS().brIf(out);
              tileCall(widest, 32);
              f.br(top);
            });
          });
        }
        f.block((out) => {
          f.loop((top) => {
            f.localGet(j).i32Const(8).i32Add().localGet(cols).i32GtS().brIf(out);
            tileCall(wide, 8);
            f.br(top);
          });
        });
        f.localGet(j).i32Const(4).i32Add().localGet(cols).i32LeS();
        f.if(() => tileCall(narrow, 4));
        scalarCols(R);
        addTo(f, i, R);
      };
      f.localGet(b).localGet(c0).i32Const(4).i32Mul().i32Add().localSet(bj);
      f.localGet(bias).localGet(c0).i32Const(4).i32Mul().i32Add().localSet(bcol);
      f.i32Const(0).localSet(i);
      f.block((out) => {
        f.loop((top) => {
          f.localGet(i).i32Const(DR).i32Add().localGet(rows).i32GtS().brIf(out);
          rowBlock(DR, d42, d41);
          f.br(top);
        });
      });
      f.block((out) => {
        f.loop((top) => {
          f.localGet(i).localGet(rows).i32GeS().brIf(out);
          rowBlock(1, d12, d11, d18);
          f.br(top);
        });
      });
      f.return();
    });

    // ---- packed path -------------------------------------------------------------------------
    f.localGet(work).localSet(wB);
    f.localGet(work).i32Const(4 * cfg.kc * cfg.nc).i32Add().localSet(wA);
    f.localGet(wA).i32Const(4 * cfg.mc * cfg.kc).i32Add().localSet(tmp);
    f.localGet(c0).localSet(jc);
    f.loop((jcTop) => {
      minI32(f, t1, t2, () => f.i32Const(cfg.nc), () => f.localGet(c1).localGet(jc).i32Sub());
      f.localSet(nc);
      f.i32Const(0).localSet(pc);
      f.loop((pcTop) => {
        minI32(f, t1, t2, () => f.i32Const(cfg.kc), () => f.localGet(k).localGet(pc).i32Sub());
        f.localSet(kc);
        // packB(src = b + pc*sbpB + jc*sbjB, lineB = sbjB, stepB = sbpB, lines = nc, kc, wB)
        f.localGet(b).localGet(pc).localGet(sbpB).i32Mul().i32Add();
        f.localGet(jc).localGet(sbjB).i32Mul().i32Add();
        f.localGet(sbjB).localGet(sbpB).localGet(nc).localGet(kc).localGet(wB).call(packB);
        // kflags = (pc == 0 ? flags & ACC : ACC) | (pc + kc >= k ? flags & EPILOGUE : 0)
        f.localGet(flags).i32Const(ACC).i32And().i32Const(ACC).localGet(pc).i32Eqz().select();
        f.localGet(flags).i32Const(EPILOGUE).i32And().i32Const(0);
        f.localGet(pc).localGet(kc).i32Add().localGet(k).i32GeS().select();
        f.i32Or().localSet(kflags);
        f.localGet(r0).localSet(ic);
        f.loop((icTop) => {
          minI32(f, t1, t2, () => f.i32Const(cfg.mc), () => f.localGet(r1).localGet(ic).i32Sub());
          f.localSet(mc);
          // packA(src = a + ic*saiB + pc*sapB, lineB = saiB, stepB = sapB, lines = mc, kc, wA)
          f.localGet(a).localGet(ic).localGet(saiB).i32Mul().i32Add();
          f.localGet(pc).localGet(sapB).i32Mul().i32Add();
          f.localGet(saiB).localGet(sapB).localGet(mc).localGet(kc).localGet(wA).call(packA);
          f.i32Const(0).localSet(jr);
          f.loop((jrTop) => {
            minI32(f, t1, t2, () => f.i32Const(cfg.nr), () => f.localGet(nc).localGet(jr).i32Sub());
            f.localSet(nr);
            // column bias pointer: bias + (jc + jr)*4
            f.localGet(bias).localGet(jc).localGet(jr).i32Add().i32Const(4).i32Mul().i32Add();
            f.localSet(bcol);
            f.i32Const(0).localSet(ir);
            f.loop((irTop) => {
              minI32(
                f,
                t1,
                t2,
                () => f.i32Const(cfg.mr),
                () => f.localGet(mc).localGet(ir).i32Sub(),
              );
              f.localSet(mr);
              // cptr = c + (ic+ir)*ldcB + (jc+jr)*4 ; brow = bias + (ic+ir)*4
              f.localGet(c).localGet(ic).localGet(ir).i32Add().localGet(ldcB).i32Mul().i32Add();
              f.localGet(jc).localGet(jr).i32Add().i32Const(4).i32Mul().i32Add().localSet(cptr);
              f.localGet(bias).localGet(ic).localGet(ir).i32Add().i32Const(4).i32Mul().i32Add();
              f.localSet(brow);
              const panels = () => {
                f.localGet(wA).localGet(ir).localGet(kc).i32Mul().i32Const(4).i32Mul().i32Add();
                f.localGet(wB).localGet(jr).localGet(kc).i32Mul().i32Const(4).i32Mul().i32Add();
                f.localGet(kc);
              };
              // Full-width tiles go straight to C (with a short-row kernel for the last rows);
              // narrower ones through the scratch tile and the merge.
              const direct = (fn: number) => {
                panels();
                f.localGet(cptr).localGet(ldcB).localGet(kflags);
                f.localGet(brow).localGet(bcol).localGet(slope).call(fn);
              };
              const byRows = (r: number) => {
                if (r === cfg.mr) direct(kernel);
                else {
                  f.localGet(mr).i32Const(r).i32Eq();
                  f.if(() => direct(shortKernels[r - 1]), () => byRows(r + 1));
                }
              };
              f.localGet(nr).i32Const(cfg.nr).i32Eq();
              f.if(() => byRows(1), () => {
                panels();
                f.localGet(tmp).i32Const(4 * cfg.nr).i32Const(0);
                f.i32Const(0).i32Const(0).f32Const(0).call(kernel);
                f.localGet(tmp).localGet(cptr).localGet(ldcB).localGet(mr).localGet(nr);
                f.localGet(kflags).localGet(brow).localGet(bcol).localGet(slope).call(merge);
              });
              addTo(f, ir, cfg.mr);
              f.localGet(ir).localGet(mc).i32LtS().brIf(irTop);
            });
            addTo(f, jr, cfg.nr);
            f.localGet(jr).localGet(nc).i32LtS().brIf(jrTop);
          });
          addTo(f, ic, cfg.mc);
          f.localGet(ic).localGet(r1).i32LtS().brIf(icTop);
        });
        addTo(f, pc, () => f.localGet(kc));
        f.localGet(pc).localGet(k).i32LtS().brIf(pcTop);
      });
      addTo(f, jc, cfg.nc);
      f.localGet(jc).localGet(c1).i32LtS().brIf(jcTop);
    });
  });
  return mb.build();
}

let relaxedSupport: boolean | undefined;

/** Whether this engine accepts `f32x4.relaxed_madd` (checked once with `WebAssembly.validate`). */
export function relaxedSimdSupported(): boolean {
  if (relaxedSupport === undefined) {
    const mb = new ModuleBuilder();
    mb.addFunction("f", ["v128", "v128", "v128"], ["v128"], (f) => {
      f.localGet(0).localGet(1).localGet(2).f32x4RelaxedMadd();
    });
    try {
      relaxedSupport = WebAssembly.validate(mb.build() as BufferSource);
    } catch {
      relaxedSupport = false;
    }
  }
  return relaxedSupport;
}

/**
 * The raw export: `gemm(a, sai, sap, b, sbp, sbj, c, ldc, k, rowStart, rowEnd, colStart, colEnd,
 * flags, work, epi)`, 16 i32 arguments (so a thread pool can pass them through an Int32Array).
 *
 * - `a`, `b`, `c`: byte addresses of the operands in the shared memory; `sai`, `sap`, `sbp`,
 *   `sbj`, `ldc`: strides in elements (C's columns are contiguous, its row stride is `ldc`);
 * - `k`: contraction length (0 allowed: C = accumulate ? C : 0, then the epilogue);
 * - `rowStart`/`rowEnd`, `colStart`/`colEnd`: the block of C this call computes (half-open);
 * - `flags`: an OR of {@link GEMM_FLAGS};
 * - `work`: byte address of {@link GEMM_WORK_BYTES} bytes of scratch private to this call
 *   (16-byte alignment recommended);
 * - `epi`: byte address of the epilogue descriptor `{ bias: i32 byte address, slope: f32 }`
 *   (8 bytes), read only when flags has BIAS_ROW, BIAS_COL, RELU or LEAKY_RELU, and read at
 *   entry, so it may be the first 8 bytes of `work`. `bias[i]` is the f32 at `bias + 4*i`,
 *   indexed by the absolute row (BIAS_ROW) or column (BIAS_COL).
 *
 * Addresses are unsigned (pass values >= 2^31 as their i32 bit pattern). C must not overlap A,
 * B or the scratch; A and B may overlap each other. Unused arguments may be anything.
 */
export type GemmFn = (
  a: number,
  sai: number,
  sap: number,
  b: number,
  sbp: number,
  sbj: number,
  c: number,
  ldc: number,
  k: number,
  rowStart: number,
  rowEnd: number,
  colStart: number,
  colEnd: number,
  flags: number,
  work: number,
  epi: number,
) => void;

/** Named arguments of {@link GemmKernel.run} (see {@link GemmFn} for their meaning). */
export interface GemmArgs {
  /** Byte address of A. */
  a: number;
  /** A row stride (elements). */
  sai: number;
  /** A contraction stride (elements). */
  sap: number;
  /** Byte address of B. */
  b: number;
  /** B contraction stride (elements). */
  sbp: number;
  /** B column stride (elements). */
  sbj: number;
  /** Byte address of C. */
  c: number;
  /** C row stride (elements; C columns are contiguous). */
  ldc: number;
  /** Contraction length (0 allowed). */
  k: number;
  /** First row (default 0). */
  rowStart?: number;
  /** Row end (exclusive). */
  rowEnd: number;
  /** First column (default 0). */
  colStart?: number;
  /** Column end (exclusive). */
  colEnd: number;
  /** Add into C (default false). */
  accumulate?: boolean;
  /** Byte address of at least {@link GemmKernel.workBytes} bytes of private scratch. */
  work: number;
  /** Bias vector (byte address) and the axis it runs along. */
  bias?: { ptr: number; axis: "row" | "col" };
  /** Activation after the bias. */
  activation?: "relu" | { leakyRelu: number };
}

const moduleCache = new Map<string, WebAssembly.Module>();

/**
 * The compiled module for `opts` (cached per option set). The bytes are small (~15 KB) and
 * compile in milliseconds; a `WebAssembly.Module` can be posted to workers.
 */
export function gemmModule(opts: GemmOptions): WebAssembly.Module {
  const key = JSON.stringify(resolve(opts));
  let m = moduleCache.get(key);
  if (!m) {
    m = new WebAssembly.Module(buildGemmModule(opts) as BufferSource);
    moduleCache.set(key, m);
  }
  return m;
}

/** A `gemm` instance bound to one shared memory. */
export class GemmKernel {
  /** The raw export (fastest to call in a hot loop). */
  readonly fn: GemmFn;
  /** Whether the module uses relaxed SIMD FMA. */
  readonly relaxed: boolean;
  /** Scratch bytes each concurrent call needs at `work`. */
  readonly workBytes: number;
  readonly #memory: WebAssembly.Memory;
  #I: Int32Array;
  #F: Float32Array;

  private constructor(
    memory: WebAssembly.Memory,
    fn: GemmFn,
    relaxed: boolean,
    workBytes: number,
  ) {
    this.#memory = memory;
    this.fn = fn;
    this.relaxed = relaxed;
    this.workBytes = workBytes;
    this.#I = new Int32Array(memory.buffer);
    this.#F = new Float32Array(memory.buffer);
  }

  /**
   * Instantiates the module over `memory` (shared, at most `opts.maxPages` pages). `relaxed`
   * defaults to whatever the engine supports.
   */
  static create(memory: WebAssembly.Memory, opts: Partial<GemmOptions> = {}): GemmKernel {
    const relaxed = (opts.relaxed ?? true) && relaxedSimdSupported();
    const full = { ...opts, relaxed };
    const inst = new WebAssembly.Instance(gemmModule(full), { env: { memory } });
    return new GemmKernel(memory, inst.exports.gemm as GemmFn, relaxed, gemmWorkBytes(full));
  }

  /**
   * Runs one product (see {@link GemmFn}); with an epilogue, its descriptor is written to the
   * first 8 bytes of `work`.
   */
  run(x: GemmArgs): void {
    let flags = x.accumulate ? ACC : 0;
    if (x.bias) flags |= x.bias.axis === "row" ? BIAS_ROW : BIAS_COL;
    let slope = 0;
    if (x.activation === "relu") flags |= RELU;
    else if (x.activation) {
      flags |= LEAKY;
      slope = x.activation.leakyRelu;
    }
    if (flags & EPILOGUE) {
      if (this.#I.buffer !== this.#memory.buffer) {
        this.#I = new Int32Array(this.#memory.buffer);
        this.#F = new Float32Array(this.#memory.buffer);
      }
      this.#I[x.work >>> 2] = x.bias?.ptr ?? 0;
      this.#F[(x.work >>> 2) + 1] = slope;
    }
    this.fn(
      x.a,
      x.sai,
      x.sap,
      x.b,
      x.sbp,
      x.sbj,
      x.c,
      x.ldc,
      x.k,
      x.rowStart ?? 0,
      x.rowEnd,
      x.colStart ?? 0,
      x.colEnd,
      flags,
      x.work,
      x.work,
    );
  }
}
