/**
 * The fused LSTM step (`lstmStep`, see `LstmStepSpec` in gpu/kernel.ts) in WebAssembly SIMD for
 * the CPU backend: four hidden units per iteration, exp/tanh/sigmoid from gpu/cpu/mathf.ts (the
 * same f32 algorithms as the JavaScript rendering, vectorized), f32 rounding per op. Rendered
 * when the hidden size is a multiple of 4 ({@link wasmLstmSupported}); otherwise the JavaScript
 * kernel of gpu/cpu/codegen.ts runs.
 *
 * Export `k(ptr_0, ..., ptr_n)`: the byte addresses of the spec's buffers, in its order.
 * @module
 */

import { lstmActsOffset, type LstmStepSpec } from "../kernel.ts";
import { ConstPool, emitSigmoid, emitTanh } from "./mathf.ts";
import { type FunctionBuilder, ModuleBuilder, type ValType } from "./wasm_builder.ts";

/** Whether {@link buildLstmStepModule} renders `s`. */
export function wasmLstmSupported(s: LstmStepSpec): boolean {
  return s.h % 4 === 0 && s.b > 0;
}

/** The module of one LSTM step, forward or backward. */
export function buildLstmStepModule(s: LstmStepSpec): Uint8Array {
  const mb = new ModuleBuilder();
  mb.importMemory({ min: 1, max: 65536, shared: true });
  const n = s.backward ? 7 + (s.masked ? 1 : 0) : 4 + (s.masked ? 1 : 0);
  const params: ValType[] = new Array(n).fill("i32");
  mb.addFunction("k", params, [], (f) => (s.backward ? backward(f, s) : forward(f, s)));
  return mb.build();
}

/**
 * The loop over rows `b` and units `j` (4 at a time) shared by both directions: sets the locals
 * `q` (byte offset of unit j in a [*, H] row), the step's row addresses, and the mask vector.
 */
function rows(
  f: FunctionBuilder,
  s: LstmStepSpec,
  step: number,
  mask: number | null,
  body: (at: {
    g: number; // byte address of (b, t, gate 0, j) in a [B, T, 4H] buffer, minus its base
    i: number; // byte offset of (b, j) in a [B, H] part
    valid: number; // v128 all-ones where the step is valid
  }) => void,
): void {
  const t = f.local("i32"), b = f.local("i32"), j = f.local("i32");
  const g = f.local("i32"), i = f.local("i32"), valid = f.local("v128");
  f.localGet(step).i32Load().localSet(t);
  f.i32Const(0).localSet(b);
  f.block((doneB) => {
    f.loop((topB) => {
      f.localGet(b).i32Const(s.b).i32GeU().brIf(doneB);
      if (mask !== null) {
        // valid = mask[b, t] != 0, as a lane mask
        f.localGet(mask).localGet(b).i32Const(s.steps).i32Mul().localGet(t).i32Add();
        f.i32Const(4).i32Mul().i32Add().v128Load32Splat();
        f.v128ConstF32([0, 0, 0, 0]).f32x4Eq().v128ConstI32([-1, -1, -1, -1]).v128Xor();
        f.localSet(valid);
      } else {
        f.v128ConstI32([-1, -1, -1, -1]).localSet(valid);
      }
      f.i32Const(0).localSet(j);
      f.block((doneJ) => {
        f.loop((topJ) => {
          f.localGet(j).i32Const(s.h).i32GeU().brIf(doneJ);
          // g = ((b * T + t) * 4H + j) * 4; i = (b * H + j) * 4
          f.localGet(b).i32Const(s.steps).i32Mul().localGet(t).i32Add().i32Const(4 * s.h)
            .i32Mul().localGet(j).i32Add().i32Const(4).i32Mul().localSet(g);
          f.localGet(b).i32Const(s.h).i32Mul().localGet(j).i32Add().i32Const(4).i32Mul()
            .localSet(i);
          body({ g, i, valid });
          f.localGet(j).i32Const(4).i32Add().localSet(j);
          f.br(topJ);
        });
      });
      f.localGet(b).i32Const(1).i32Add().localSet(b);
      f.br(topB);
    });
  });
}

/** Byte address of the state slot's part (0 h, 1 c) for the slot `t` (+1 when `plusOne`). */
function slotAddr(
  f: FunctionBuilder,
  s: LstmStepSpec,
  base: number,
  t: number,
  plusOne: boolean,
  part: number,
  i: number,
): void {
  f.localGet(base).localGet(t);
  if (plusOne) f.i32Const(1).i32Add();
  f.i32Const(2 * s.slot * 4).i32Mul().i32Add().localGet(i).i32Add();
  if (part) f.i32Const(s.slot * 4).i32Add();
}

function forward(f: FunctionBuilder, s: LstmStepSpec): void {
  const m = s.masked ? 1 : 0;
  const [P, R, MASK, STEP, S] = [0, 1, m ? 2 : -1, 2 + m, 3 + m];
  const c = new ConstPool(f);
  const tl = f.local("i32");
  f.localGet(STEP).i32Load().localSet(tl);
  const acts = lstmActsOffset(s) * 4;
  const pre = f.local("v128"), ig = f.local("v128"), fg = f.local("v128");
  const gg = f.local("v128"), og = f.local("v128"), cp = f.local("v128"), cn = f.local("v128");
  const hn = f.local("v128"), rrow = f.local("i32");
  rows(f, s, STEP, m ? MASK : null, ({ g, i, valid }) => {
    // The row of r: (b * 4H + j) * 4 bytes = i + 3 * b * H * 4, and b * H * 4 = i - i % (H * 4).
    f.localGet(i).localGet(i).localGet(i).i32Const(s.h * 4).i32RemU().i32Sub().i32Const(3)
      .i32Mul().i32Add().localSet(rrow);
    const gate = (k: number, out: number, tanh: boolean) => {
      f.localGet(P).localGet(g).i32Add().v128Load({ offset: k * s.h * 4 });
      f.localGet(R).localGet(rrow).i32Add().v128Load({ offset: k * s.h * 4 });
      f.f32x4Add().localSet(pre);
      if (tanh) emitTanh(f, c, pre);
      else emitSigmoid(f, c, pre);
      f.localSet(out);
    };
    gate(0, ig, false);
    gate(1, fg, false);
    gate(2, gg, true);
    gate(3, og, false);
    const prevPlus = s.reverse;
    const nextPlus = !s.reverse;
    slotAddr(f, s, S, tl, prevPlus, 1, i);
    f.v128Load().localSet(cp);
    // c = f * cPrev + i * g; h = o * tanh(c)
    f.localGet(fg).localGet(cp).f32x4Mul().localGet(ig).localGet(gg).f32x4Mul().f32x4Add()
      .localSet(cn);
    emitTanh(f, c, cn);
    f.localGet(og).f32x4Mul().localSet(hn);
    // h slot: valid ? h : hPrev; c slot: valid ? c : cPrev
    slotAddr(f, s, S, tl, nextPlus, 0, i);
    f.localGet(hn);
    slotAddr(f, s, S, tl, prevPlus, 0, i);
    f.v128Load().localGet(valid).v128Bitselect().v128Store();
    slotAddr(f, s, S, tl, nextPlus, 1, i);
    f.localGet(cn).localGet(cp).localGet(valid).v128Bitselect().v128Store();
    for (const [k, v] of [ig, fg, gg, og].entries()) {
      f.localGet(S).localGet(g).i32Add().localGet(v).v128Store({ offset: acts + k * s.h * 4 });
    }
  });
  c.finish();
}

function backward(f: FunctionBuilder, s: LstmStepSpec): void {
  const m = s.masked ? 1 : 0;
  const S = 0, MASK = m ? 1 : -1, STEP = 1 + m, DS = 2 + m, DH = 3 + m, CI = 4 + m;
  const DP = 5 + m, CO = 6 + m;
  const bh4 = s.b * s.h * 4;
  const c = new ConstPool(f);
  const tl = f.local("i32");
  f.localGet(STEP).i32Load().localSet(tl);
  const acts = lstmActsOffset(s) * 4;
  const [ig, fg, gg, og, cp, cn, tc, gh, gc, dh, dc, one] = new Array(12).fill(0).map(() =>
    f.local("v128")
  );
  const rrow = f.local("i32");
  const prevPlus = s.reverse;
  const nextPlus = !s.reverse;
  c.f32(1);
  f.localSet(one);
  rows(f, s, STEP, m ? MASK : null, ({ g, i, valid }) => {
    f.localGet(i).localGet(i).localGet(i).i32Const(s.h * 4).i32RemU().i32Sub().i32Const(3)
      .i32Mul().i32Add().localSet(rrow);
    for (const [k, v] of [ig, fg, gg, og].entries()) {
      f.localGet(S).localGet(g).i32Add().v128Load({ offset: acts + k * s.h * 4 }).localSet(v);
    }
    slotAddr(f, s, S, tl, prevPlus, 1, i);
    f.v128Load().localSet(cp);
    f.localGet(fg).localGet(cp).f32x4Mul().localGet(ig).localGet(gg).f32x4Mul().f32x4Add()
      .localSet(cn);
    emitTanh(f, c, cn);
    f.localSet(tc);
    // gh = dS[next].h + dhIn + pass; gc = dS[next].c + dcIn
    slotAddr(f, s, DS, tl, nextPlus, 0, i);
    f.v128Load();
    f.localGet(DH).localGet(i).i32Add().v128Load().f32x4Add();
    f.localGet(CI).localGet(i).i32Add().v128Load({ offset: 5 * bh4 }).f32x4Add().localSet(gh);
    slotAddr(f, s, DS, tl, nextPlus, 1, i);
    f.v128Load();
    f.localGet(CI).localGet(i).i32Add().v128Load({ offset: 4 * bh4 }).f32x4Add().localSet(gc);
    // dh = valid ? gh : 0; dc = (valid ? gc : 0) + dh * o * (1 - tc^2)
    f.localGet(gh).localGet(valid).v128And().localSet(dh);
    f.localGet(gc).localGet(valid).v128And();
    f.localGet(dh).localGet(og).f32x4Mul();
    f.localGet(one).localGet(tc).localGet(tc).f32x4Mul().f32x4Sub().f32x4Mul();
    f.f32x4Add().localSet(dc);
    const dOut = (k: number, value: () => void) => {
      value();
      const tmp = f.local("v128");
      f.localSet(tmp);
      f.localGet(DP).localGet(g).i32Add().localGet(tmp).v128Store({ offset: k * s.h * 4 });
      f.localGet(CO).localGet(rrow).i32Add().localGet(tmp).v128Store({ offset: k * s.h * 4 });
    };
    const oneMinus = (v: number) => f.localGet(one).localGet(v).f32x4Sub();
    // di = dc * g * i * (1 - i)
    dOut(0, () => {
      f.localGet(dc).localGet(gg).f32x4Mul().localGet(ig).f32x4Mul();
      oneMinus(ig);
      f.f32x4Mul();
    });
    // df = dc * cPrev * f * (1 - f)
    dOut(1, () => {
      f.localGet(dc).localGet(cp).f32x4Mul().localGet(fg).f32x4Mul();
      oneMinus(fg);
      f.f32x4Mul();
    });
    // dg = dc * i * (1 - g^2)
    dOut(2, () => {
      f.localGet(dc).localGet(ig).f32x4Mul();
      f.localGet(one).localGet(gg).localGet(gg).f32x4Mul().f32x4Sub().f32x4Mul();
    });
    // do = dh * tc * o * (1 - o)
    dOut(3, () => {
      f.localGet(dh).localGet(tc).f32x4Mul().localGet(og).f32x4Mul();
      oneMinus(og);
      f.f32x4Mul();
    });
    // dc_prev = dc * f + (valid ? 0 : gc); pass = valid ? 0 : gh
    f.localGet(CO).localGet(i).i32Add();
    f.localGet(dc).localGet(fg).f32x4Mul();
    f.localGet(gc).localGet(valid).v128AndNot().f32x4Add();
    f.v128Store({ offset: 4 * bh4 });
    f.localGet(CO).localGet(i).i32Add();
    f.localGet(gh).localGet(valid).v128AndNot();
    f.v128Store({ offset: 5 * bh4 });
  });
  c.finish();
}
