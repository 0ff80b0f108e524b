/**
 * Convolution ops and layers: forwards against direct-loop TypeScript references on small odd
 * sizes, gradients by central differences, im2col/col2im adjointness, and memory hygiene.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import {
  col2im,
  conv2d,
  convGeometry,
  convTranspose2d,
  convTransposeGeometry,
  im2col,
  maxPool2d,
  maxPool2dIndices,
} from "../tensor/conv_ops.ts";
import { tensor } from "../tensor/functional.ts";
import { noGrad, readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { Conv2d, ConvTranspose2d, MaxPool2d } from "../nn/conv.ts";
import { assertClose, gradCheck, type GradInput, randomData, rng, setup } from "./helpers.ts";

await setup();

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const inp = (shape: number[], seed: number): GradInput => ({
  data: randomData(size(shape), seed),
  shape,
});

/** Window placement of a reference conv: explicit top/left padding and output size. */
interface RefGeometry {
  stride: [number, number];
  pad: [number, number];
  dilation: [number, number];
  out: [number, number];
}

/** Direct-loop conv2d: x [N,C,H,W], w [Co,C,kh,kw], bias [Co] -> [N,Co,OH,OW]. */
function refConv2d(
  x: Float32Array,
  xs: number[],
  w: Float32Array,
  ws: number[],
  bias: Float32Array | null,
  g: RefGeometry,
): Float32Array {
  const [n, c, h, wd] = xs;
  const [co, , kh, kw] = ws;
  const [oh, ow] = g.out;
  const y = new Float32Array(n * co * oh * ow);
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < co; o++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          let acc = bias ? bias[o] : 0;
          for (let ci = 0; ci < c; ci++) {
            for (let ki = 0; ki < kh; ki++) {
              for (let kj = 0; kj < kw; kj++) {
                const r = i * g.stride[0] - g.pad[0] + ki * g.dilation[0];
                const s = j * g.stride[1] - g.pad[1] + kj * g.dilation[1];
                if (r < 0 || r >= h || s < 0 || s >= wd) continue;
                acc += x[((b * c + ci) * h + r) * wd + s] * w[((o * c + ci) * kh + ki) * kw + kj];
              }
            }
          }
          y[((b * co + o) * oh + i) * ow + j] = acc;
        }
      }
    }
  }
  return y;
}

/**
 * Direct-loop transposed conv by scattering: x [N,Ci,H,W], w [Ci,Co,kh,kw] -> [N,Co,OH,OW], each
 * input pixel adds w * x at output `(ih*s - pad + ki*d, ...)`; `g.out` is the output size.
 */
function refConvTranspose2d(
  x: Float32Array,
  xs: number[],
  w: Float32Array,
  ws: number[],
  bias: Float32Array | null,
  g: RefGeometry,
): Float32Array {
  const [n, ci, h, wd] = xs;
  const [, co, kh, kw] = ws;
  const [oh, ow] = g.out;
  const y = new Float32Array(n * co * oh * ow);
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < co; o++) {
      for (let p = 0; p < oh * ow; p++) y[(b * co + o) * oh * ow + p] = bias ? bias[o] : 0;
    }
    for (let c = 0; c < ci; c++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < wd; j++) {
          const v = x[((b * ci + c) * h + i) * wd + j];
          for (let o = 0; o < co; o++) {
            for (let ki = 0; ki < kh; ki++) {
              for (let kj = 0; kj < kw; kj++) {
                const r = i * g.stride[0] - g.pad[0] + ki * g.dilation[0];
                const s = j * g.stride[1] - g.pad[1] + kj * g.dilation[1];
                if (r < 0 || r >= oh || s < 0 || s >= ow) continue;
                y[((b * co + o) * oh + r) * ow + s] += v * w[((c * co + o) * kh + ki) * kw + kj];
              }
            }
          }
        }
      }
    }
  }
  return y;
}

/** Direct-loop max pool: values and first-argmax indices (h*W+w within the plane). */
function refMaxPool(
  x: Float32Array,
  xs: number[],
  k: [number, number],
  g: RefGeometry,
): { y: Float32Array; idx: Int32Array } {
  const [n, c, h, wd] = xs;
  const [oh, ow] = g.out;
  const y = new Float32Array(n * c * oh * ow);
  const idx = new Int32Array(y.length);
  for (let p = 0; p < n * c; p++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        let best = -Infinity;
        let at = -1;
        for (let ki = 0; ki < k[0]; ki++) {
          for (let kj = 0; kj < k[1]; kj++) {
            const r = i * g.stride[0] - g.pad[0] + ki;
            const s = j * g.stride[1] - g.pad[1] + kj;
            if (r < 0 || r >= h || s < 0 || s >= wd) continue;
            const v = x[p * h * wd + r * wd + s];
            if (v > best) {
              best = v;
              at = r * wd + s;
            }
          }
        }
        y[(p * oh + i) * ow + j] = best;
        idx[(p * oh + i) * ow + j] = at;
      }
    }
  }
  return { y, idx };
}

/** Distinct values spaced `gap` apart in random order (no ties, even after a small nudge). */
function distinctData(n: number, seed: number, gap = 0.05): Float32Array {
  const r = rng(seed);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return Float32Array.from(order, (v) => (v - n / 2) * gap);
}

async function values(t: Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

// ---------------------------------------------------------------- geometry

Deno.test("convGeometry: PyTorch padding, TF 'same' (asymmetric) and 'valid'", () => {
  const g = convGeometry([64, 1, 28, 28], 5, { stride: 2, padding: 2 });
  assert.deepEqual([g.outH, g.outW, g.padTop, g.padLeft], [14, 14, 2, 2]);
  const same = convGeometry([64, 1, 28, 28], 5, { stride: 2, padding: "same" });
  // TF pads 3 rows in total for 28 -> 14 with a 5x5 stride-2 window: 1 above, 2 below.
  assert.deepEqual([same.outH, same.outW, same.padTop, same.padLeft], [14, 14, 1, 1]);
  const valid = convGeometry([1, 1, 7, 5], [3, 2], { padding: "valid" });
  assert.deepEqual([valid.outH, valid.outW], [5, 4]);
  const t = convTransposeGeometry([64, 128, 7, 7], 64, 5, {
    stride: 2,
    padding: 2,
    outputPadding: 1,
  });
  assert.deepEqual([t.n, t.c, t.h, t.w, t.outH, t.outW], [64, 64, 14, 14, 7, 7]);
  const tSame = convTransposeGeometry([64, 128, 7, 7], 64, 5, { stride: 2, padding: "same" });
  assert.deepEqual([tSame.h, tSame.padTop], [14, 1]);
  assert.throws(() => convGeometry([1, 1, 3, 3], 5), /does not fit/);
  assert.throws(
    () => convTransposeGeometry([1, 1, 3, 3], 1, 3, { stride: 2, outputPadding: 2 }),
    /output padding/,
  );
});

// ---------------------------------------------------------------- forward vs references

const convCases: { name: string; k: [number, number]; opts: Parameters<typeof conv2d>[3] }[] = [
  { name: "3x3 stride 1 pad 1", k: [3, 3], opts: { stride: 1, padding: 1 } },
  { name: "5x5 stride 2 pad 2", k: [5, 5], opts: { stride: 2, padding: 2 } },
  { name: "3x2 stride [2,1] no pad", k: [3, 2], opts: { stride: [2, 1] } },
  { name: "3x3 dilation 2 pad [2,1]", k: [3, 3], opts: { dilation: 2, padding: [2, 1] } },
  { name: "5x5 stride 2 'same'", k: [5, 5], opts: { stride: 2, padding: "same" } },
];

for (const { name, k, opts } of convCases) {
  Deno.test(`conv2d forward matches direct loops: ${name}`, async () => {
    const xs = [2, 3, 7, 5];
    const ws = [4, 3, k[0], k[1]];
    const xd = randomData(size(xs), 1);
    const wd = randomData(size(ws), 2);
    const bd = randomData(4, 3);
    const g = convGeometry(xs, k, opts);
    const ref = refConv2d(xd, xs, wd, ws, bd, {
      stride: [g.strideH, g.strideW],
      pad: [g.padTop, g.padLeft],
      dilation: [g.dilationH, g.dilationW],
      out: [g.outH, g.outW],
    });
    await tidy(() => {
      const y = conv2d(tensor(xd, xs), tensor(wd, ws), tensor(bd, [4]), opts);
      assert.deepEqual(y.shape, [2, 4, g.outH, g.outW]);
      return y;
    }).data().then((got) => assertClose(got, ref, 1e-4, 1e-4, name));
  });
}

Deno.test("conv2d forward: batch of one, no bias", async () => {
  const xs = [1, 2, 6, 5];
  const ws = [3, 2, 3, 3];
  const xd = randomData(size(xs), 4);
  const wd = randomData(size(ws), 5);
  const y = conv2d(tensor(xd, xs), tensor(wd, ws), null, { padding: 1 });
  const ref = refConv2d(xd, xs, wd, ws, null, {
    stride: [1, 1],
    pad: [1, 1],
    dilation: [1, 1],
    out: [6, 5],
  });
  assertClose(await values(y), ref, 1e-4, 1e-4, "conv2d N=1");
});

const deconvCases: {
  name: string;
  xs: number[];
  k: number;
  opts: Parameters<typeof convTranspose2d>[3];
  out: [number, number];
}[] = [
  {
    name: "5x5 stride 2 pad 2 output padding 1",
    xs: [2, 3, 4, 3],
    k: 5,
    opts: { stride: 2, padding: 2, outputPadding: 1 },
    out: [8, 6],
  },
  { name: "3x3 stride 1 pad 0", xs: [2, 3, 4, 3], k: 3, opts: {}, out: [6, 5] },
  {
    name: "3x3 stride 2 pad 1 N=1",
    xs: [1, 3, 4, 3],
    k: 3,
    opts: { stride: 2, padding: 1 },
    out: [7, 5],
  },
  {
    name: "5x5 stride 2 'same'",
    xs: [2, 3, 4, 3],
    k: 5,
    opts: { stride: 2, padding: "same" },
    out: [8, 6],
  },
];

for (const { name, xs, k, opts, out } of deconvCases) {
  Deno.test(`convTranspose2d forward matches direct loops: ${name}`, async () => {
    const ws = [3, 2, k, k];
    const xd = randomData(size(xs), 6);
    const wd = randomData(size(ws), 7);
    const bd = randomData(2, 8);
    const g = convTransposeGeometry(xs, 2, k, opts);
    assert.deepEqual([g.h, g.w], out);
    const ref = refConvTranspose2d(xd, xs, wd, ws, bd, {
      stride: [g.strideH, g.strideW],
      pad: [g.padTop, g.padLeft],
      dilation: [1, 1],
      out,
    });
    const y = convTranspose2d(tensor(xd, xs), tensor(wd, ws), tensor(bd, [2]), opts);
    assert.deepEqual(y.shape, [xs[0], 2, ...out]);
    assertClose(await values(y), ref, 1e-4, 1e-4, name);
  });
}

Deno.test("convTranspose2d is the input-gradient of conv2d with the same weight", async () => {
  // <convT(y, w), x> == <y, conv(x, w)> for conv [Co,Ci,k,k] read as convT weight [Co,Ci,k,k].
  const xs = [2, 3, 8, 6];
  const ws = [4, 3, 5, 5];
  const opts = { stride: 2, padding: 2 };
  const xd = randomData(size(xs), 9);
  const wd = randomData(size(ws), 10);
  const yd = randomData(2 * 4 * 4 * 3, 11);
  const [lhs, rhs] = await readMany(tidy(() => {
    const x = tensor(xd, xs);
    const w = tensor(wd, ws);
    const y = tensor(yd, [2, 4, 4, 3]);
    const back = convTranspose2d(y, w, null, { ...opts, outputPadding: 1 });
    return [back.mul(x).sum(), conv2d(x, w, null, opts).mul(y).sum()];
  }));
  assertClose(lhs, rhs, 1e-3, 1e-4, "adjoint");
});

const poolCases: {
  name: string;
  k: [number, number];
  stride?: number;
  padding?: number;
  out: [number, number];
}[] = [
  { name: "2x2 (stride 2)", k: [2, 2], out: [3, 2] },
  { name: "3x3 stride 2 (overlapping)", k: [3, 3], stride: 2, out: [3, 2] },
  { name: "3x3 stride 2 pad 1", k: [3, 3], stride: 2, padding: 1, out: [4, 3] },
  { name: "3x2 stride 1", k: [3, 2], stride: 1, out: [5, 4] },
];

for (const { name, k, stride, padding, out } of poolCases) {
  Deno.test(`maxPool2d forward and indices match direct loops: ${name}`, async () => {
    const xs = [2, 3, 7, 5];
    const xd = randomData(size(xs), 12);
    const s = stride ?? k[0];
    const ref = refMaxPool(xd, xs, k, {
      stride: [s, stride ?? k[1]],
      pad: [padding ?? 0, padding ?? 0],
      dilation: [1, 1],
      out,
    });
    const y = maxPool2d(tensor(xd, xs), k, stride, padding);
    assert.deepEqual(y.shape, [2, 3, ...out]);
    const idx = maxPool2dIndices(y);
    assert.equal(idx.dtype, "i32");
    const [yv, iv] = await readMany([y, idx]);
    assertClose(yv, ref.y, 0, 0, name);
    assert.deepEqual(Array.from(iv), Array.from(ref.idx));
  });
}

// ---------------------------------------------------------------- gradients

Deno.test("grad: conv2d (input, weight, bias), 3x3 stride 2 pad 1", async () => {
  await gradCheck(
    "conv2d",
    (x, w, b) => conv2d(x, w, b, { stride: 2, padding: 1 }),
    [inp([2, 3, 7, 5], 20), inp([2, 3, 3, 3], 21), inp([2], 22)],
  );
});

Deno.test("grad: conv2d 5x5 stride 2 'same', dilation path 3x3 d2", async () => {
  await gradCheck(
    "conv2d same",
    (x, w) => conv2d(x, w, null, { stride: 2, padding: "same" }),
    [inp([2, 2, 7, 5], 23), inp([3, 2, 5, 5], 24)],
  );
  await gradCheck(
    "conv2d dilated",
    (x, w) => conv2d(x, w, null, { dilation: 2, padding: 1 }),
    [inp([1, 2, 6, 5], 25), inp([2, 2, 3, 3], 26)],
  );
});

Deno.test("grad: convTranspose2d (input, weight, bias), 5x5 stride 2 pad 2 output padding 1", async () => {
  await gradCheck(
    "convTranspose2d",
    (x, w, b) => convTranspose2d(x, w, b, { stride: 2, padding: 2, outputPadding: 1 }),
    [inp([2, 3, 3, 2], 27), inp([3, 2, 5, 5], 28), inp([2], 29)],
  );
});

Deno.test("grad: maxPool2d (no ties), overlapping 3x3 stride 2 and 2x2", async () => {
  await gradCheck("maxPool2d 3x3/2", (x) => maxPool2d(x, 3, 2), [
    { data: distinctData(2 * 3 * 7 * 5, 30), shape: [2, 3, 7, 5] },
  ]);
  await gradCheck("maxPool2d 2x2 pad 1", (x) => maxPool2d(x, 2, 2, 1), [
    { data: distinctData(2 * 2 * 5 * 5, 31), shape: [2, 2, 5, 5] },
  ]);
});

Deno.test("grad: im2col and col2im", async () => {
  const g = convGeometry([2, 2, 5, 4], 3, { stride: 2, padding: 1 });
  await gradCheck("im2col", (x) => im2col(x, g), [inp([2, 2, 5, 4], 32)]);
  const rows = g.c * g.kh * g.kw;
  const cols = g.n * g.outH * g.outW;
  await gradCheck("col2im", (c) => col2im(c, g), [inp([rows, cols], 33)]);
});

Deno.test("im2col and col2im are adjoint: <col2im(y), x> == <y, im2col(x)>", async () => {
  for (
    const [shape, k, opts] of [
      [[2, 3, 7, 5], 3, { stride: 1, padding: 1 }],
      [[2, 3, 7, 5], 5, { stride: 2, padding: 2 }],
      [[1, 2, 9, 6], 3, { stride: [2, 3], padding: "same", dilation: 2 }],
    ] as const
  ) {
    const g = convGeometry(shape, k, opts);
    const yShape = [g.c * g.kh * g.kw, g.n * g.outH * g.outW];
    const xd = randomData(size([...shape]), 40);
    const yd = randomData(size(yShape), 41);
    const [lhs, rhs] = await readMany(tidy(() => {
      const x = tensor(xd, [...shape]);
      const y = tensor(yd, yShape);
      return [col2im(y, g).mul(x).sum(), y.mul(im2col(x, g)).sum()];
    }));
    assertClose(lhs, rhs, 1e-4, 1e-4, `adjoint ${shape} k${k}`);
  }
});

// ---------------------------------------------------------------- layers and hygiene

Deno.test("Conv2d / ConvTranspose2d / MaxPool2d layers: shapes, parameters, initialization", async () => {
  const conv = new Conv2d(3, 8, 5, { stride: 2, padding: 2 });
  assert.deepEqual(conv.namedParameters().map(([n, t]) => [n, t.shape]), [
    ["weight", [8, 3, 5, 5]],
    ["bias", [8]],
  ]);
  const deconv = new ConvTranspose2d(8, 4, 5, {
    stride: 2,
    padding: 2,
    outputPadding: 1,
    init: "normal",
    bias: true,
  });
  assert.deepEqual(deconv.weight.shape, [8, 4, 5, 5]);
  const noBias = new Conv2d(3, 2, [3, 2], { bias: false });
  assert.equal(noBias.bias, null);
  const pool = new MaxPool2d(2);
  const [w, b, dw, db] = await readMany([conv.weight, conv.bias!, deconv.weight, deconv.bias!]);
  const bound = 1 / Math.sqrt(3 * 25);
  assert.ok(w.every((v) => Math.abs(v) <= bound) && b.every((v) => Math.abs(v) <= bound));
  const std = Math.sqrt(Array.from(dw).reduce((a, v) => a + v * v, 0) / dw.length);
  assert.ok(std > 0.015 && std < 0.025, `normal(0.02) init std ${std}`);
  assert.ok(db.every((v) => v === 0));
  const shape = tidy(() => {
    const x = tensor(randomData(2 * 3 * 12 * 10, 50), [2, 3, 12, 10]);
    const h = conv.forward(x);
    assert.deepEqual(h.shape, [2, 8, 6, 5]);
    const up = deconv.forward(h);
    assert.deepEqual(up.shape, [2, 4, 12, 10]);
    return [...pool.forward(up).shape];
  });
  assert.deepEqual(shape, [2, 4, 6, 5]);
  for (const m of [conv, deconv, noBias]) m.dispose();
});

Deno.test("tiny CNN classifier step: conv, relu, max-pool, linear; every parameter gets a gradient", async () => {
  const conv = new Conv2d(1, 4, 3, { padding: 1 });
  const pool = new MaxPool2d(2);
  const fc = tensor(randomData(4 * 3 * 3 * 5, 60, -0.1, 0.1), [4 * 3 * 3, 5]).requiresGrad_();
  const loss = tidy(() => {
    const x = tensor(randomData(2 * 1 * 7 * 7, 61), [2, 1, 7, 7]);
    const h = pool.forward(conv.forward(x).relu());
    assert.deepEqual(h.shape, [2, 4, 3, 3]);
    const logits = h.reshape([2, 36]).matmul(fc);
    const l = logits.logSoftmax(-1).mean().neg();
    l.backward();
    return l;
  });
  const grads = [conv.weight.grad!, conv.bias!.grad!, fc.grad!];
  const [lv, ...gv] = await readMany([loss, ...grads]);
  assert.ok(Number.isFinite(lv[0]));
  for (const g of gv) {
    assert.ok(g.every(Number.isFinite));
    assert.ok(g.some((v) => v !== 0));
  }
  conv.dispose();
  fc.grad?.dispose();
  fc.dispose();
  loss.dispose();
});

Deno.test("no leaks: conv ops under noGrad free their intermediates; pool indices die with the output", async () => {
  const x = tensor(randomData(2 * 3 * 7 * 5, 70), [2, 3, 7, 5]);
  const w = tensor(randomData(4 * 3 * 3 * 3, 71), [4, 3, 3, 3]);
  const wt = tensor(randomData(3 * 4 * 3 * 3, 72), [3, 4, 3, 3]);
  const b = tensor(randomData(4, 73), [4]);
  const stats = backend().stats;
  const before = stats.liveStorages;
  noGrad(() => conv2d(x, w, b, { stride: 2, padding: 1 })).dispose();
  noGrad(() => convTranspose2d(x, wt, b, { stride: 2, padding: 1 })).dispose();
  maxPool2d(x, 2).dispose();
  assert.equal(stats.liveStorages, before);
  // With grad: everything is freed by the enclosing tidy (including the saved graph).
  x.requiresGrad_();
  tidy(() => {
    const y = maxPool2d(conv2d(x, w, b, { padding: 1 }), 3, 2).sum();
    y.backward();
  });
  x.grad!.dispose();
  assert.equal(stats.liveStorages, before);
  await backend().sync();
  for (const t of [x, w, wt, b]) t.dispose();
});
