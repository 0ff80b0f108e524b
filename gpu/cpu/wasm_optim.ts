/**
 * The fused Adam update in WebAssembly SIMD for the CPU backend (the same formulation as the
 * WGSL kernel: PyTorch's, eps outside the bias-corrected root, f32 arithmetic). The step's scalars
 * (`lr / (1 - beta1^t)`, `sqrt(1 - beta2^t)`) are computed by the caller in double precision from
 * the hyperparameter buffer and the step counter, which the CPU backend reads directly.
 *
 * Export: `k(param, grad, m, v, n, stepSize, rootBc2, beta1, beta2, omb1, omb2, eps, wd, lrWd)`:
 * byte addresses of the range's first element, its length, then f32 scalars (`lrWd = lr * wd`
 * for decoupled decay).
 * @module
 */

import type { WeightDecayMode } from "../kernel.ts";
import { ConstPool, SIMD, simd } from "./mathf.ts";
import { type FunctionBuilder, ModuleBuilder, type ValType } from "./wasm_builder.ts";

/** Module of the Adam update with weight decay `decay`. */
export function buildAdamModule(decay: WeightDecayMode): Uint8Array {
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  const params: ValType[] = ["i32", "i32", "i32", "i32", "i32", ...new Array(9).fill("f32")];
  mb.addFunction("k", params, [], (f) => {
    const [P, G, M, V, N] = [0, 1, 2, 3, 4];
    const scalars = [5, 6, 7, 8, 9, 10, 11, 12, 13];
    const c = new ConstPool(f);
    // Splat every scalar once.
    const [step, root, b1, b2, omb1, omb2, eps, wd, lrWd] = scalars.map((s) => {
      const l = f.local("v128");
      f.localGet(s);
      simd(f, SIMD.f32x4Splat);
      f.localSet(l);
      return l;
    });
    const p = f.local("v128"), g = f.local("v128"), m1 = f.local("v128"), v1 = f.local("v128");
    const i = f.local("i32");
    /** One update of four lanes at byte offset `at` of every pointer (vector loads/stores). */
    const update = (
      load: (ptr: number) => void,
      store: (ptr: number, value: () => void) => void,
    ) => {
      load(P);
      f.localSet(p);
      load(G);
      if (decay === "l2") {
        f.localGet(wd).localGet(p);
        simd(f, SIMD.f32x4Mul);
        simd(f, SIMD.f32x4Add);
      }
      f.localSet(g);
      // m1 = b1 * m + omb1 * g
      f.localGet(b1);
      load(M);
      simd(f, SIMD.f32x4Mul);
      f.localGet(omb1).localGet(g);
      simd(f, SIMD.f32x4Mul);
      simd(f, SIMD.f32x4Add);
      f.localSet(m1);
      // v1 = b2 * v + (omb2 * g) * g
      f.localGet(b2);
      load(V);
      simd(f, SIMD.f32x4Mul);
      f.localGet(omb2).localGet(g);
      simd(f, SIMD.f32x4Mul);
      f.localGet(g);
      simd(f, SIMD.f32x4Mul);
      simd(f, SIMD.f32x4Add);
      f.localSet(v1);
      store(M, () => f.localGet(m1));
      store(V, () => f.localGet(v1));
      store(P, () => {
        // decayed - step * m1 / (sqrt(v1) / root + eps)
        f.localGet(p);
        if (decay === "decoupled") {
          f.localGet(lrWd).localGet(p);
          simd(f, SIMD.f32x4Mul);
          simd(f, SIMD.f32x4Sub);
        }
        f.localGet(step).localGet(m1);
        simd(f, SIMD.f32x4Mul);
        f.localGet(v1);
        simd(f, SIMD.f32x4Sqrt);
        f.localGet(root);
        simd(f, SIMD.f32x4Div);
        f.localGet(eps);
        simd(f, SIMD.f32x4Add);
        simd(f, SIMD.f32x4Div);
        simd(f, SIMD.f32x4Sub);
      });
    };
    const bump = (ptrs: number[], bytes: number) => {
      for (const q of ptrs) f.localGet(q).i32Const(bytes).i32Add().localSet(q);
    };
    // Vector part: n >> 2 iterations.
    f.i32Const(0).localSet(i);
    f.block((done) => {
      f.loop((top) => {
        f.localGet(i).i32Const(4).i32Add().localGet(N).i32GtU().brIf(done);
        update(
          (q) => {
            f.localGet(q);
            simd(f, SIMD.load).raw(4, 0);
          },
          (q, value) => {
            f.localGet(q);
            value();
            simd(f, SIMD.store).raw(4, 0);
          },
        );
        bump([P, G, M, V], 16);
        f.localGet(i).i32Const(4).i32Add().localSet(i);
        f.br(top);
      });
    });
    // Remaining elements one lane at a time (the same vector code on splat lanes).
    f.block((done) => {
      f.loop((top) => {
        f.localGet(i).localGet(N).i32GeU().brIf(done);
        scalarLane(f, update);
        bump([P, G, M, V], 4);
        f.localGet(i).i32Const(1).i32Add().localSet(i);
        f.br(top);
      });
    });
    c.finish();
  });
  return mb.build();
}

/** Runs `update` on lane 0 only: scalar loads splat, lane 0 stored. */
function scalarLane(
  f: FunctionBuilder,
  update: (load: (ptr: number) => void, store: (ptr: number, value: () => void) => void) => void,
): void {
  update(
    (q) => {
      f.localGet(q);
      simd(f, SIMD.load32Splat).raw(2, 0);
    },
    (q, value) => {
      f.localGet(q);
      value();
      simd(f, SIMD.f32x4Extract).raw(0);
      f.f32Store({ align: 2 });
    },
  );
}
