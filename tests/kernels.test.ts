/**
 * Kernel outputs against plain-TypeScript references: matmul at odd shapes (both variants, every
 * transpose, batched), reductions over each axis, numerical stability of logsumexp/softmax, and
 * NaN/Inf propagation.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { forceMatmul } from "../gpu/webgpu/render.ts";
import { LARGE_BLOCK, SMALL_BLOCK } from "../gpu/webgpu/shaders/matmul.ts";
import * as ops from "../tensor/ops.ts";
import { ones, tensor } from "../tensor/functional.ts";
import { assertClose, randomData, setup } from "./helpers.ts";

await setup();

function refMatmul(
  a: Float32Array,
  b: Float32Array,
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
): Float32Array {
  const c = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) {
        s += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
      }
      c[i * n + j] = s;
    }
  }
  return c;
}

/** The matmul variants of the running backend, each forced in turn. */
const VARIANTS: Record<string, () => void> = backend().info.kind === "webgpu"
  ? {
    simple: () => forceMatmul({ variant: "simple" }),
    blocked4x4: () => forceMatmul({ variant: "blocked", block: SMALL_BLOCK }),
    blocked8x8: () => forceMatmul({ variant: "blocked", block: LARGE_BLOCK }),
  }
  : { default: () => {} };

for (
  const [m, k, n] of [[1, 1, 1], [7, 13, 5], [33, 17, 29], [64, 64, 64], [72, 36, 132], [5, 100, 3]]
) {
  for (const [name, force] of Object.entries(VARIANTS)) {
    for (const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]) {
      Deno.test(`matmul ${name} ${m}x${k}x${n} tA=${transA} tB=${transB}`, async () => {
        const a = randomData(m * k, m + k);
        const b = randomData(k * n, k + n);
        const ta = tensor(a, transA ? [k, m] : [m, k]);
        const tb = tensor(b, transB ? [n, k] : [k, n]);
        const out = ops.empty([m, n]);
        force();
        try {
          backend().run(
            {
              kind: "matmul",
              batch: 1,
              m,
              k,
              n,
              transA,
              transB,
              batchStrideA: 0,
              batchStrideB: 0,
            },
            [ta.refFor("t"), tb.refFor("t"), out.refFor("t")],
          );
        } finally {
          forceMatmul(null);
        }
        assertClose(
          await out.data(),
          refMatmul(a, b, m, k, n, transA, transB),
          1e-4,
          1e-4,
          "matmul",
        );
        for (const t of [ta, tb, out]) t.dispose();
      });
    }
  }
}

Deno.test("matmul batched with broadcast operand", async () => {
  const [bt, m, k, n] = [3, 9, 8, 12];
  const a = randomData(bt * m * k, 1);
  const b = randomData(k * n, 2);
  const out = await tensor(a, [bt, m, k]).matmul(tensor(b, [k, n])).data();
  for (let i = 0; i < bt; i++) {
    const ref = refMatmul(a.subarray(i * m * k, (i + 1) * m * k), b, m, k, n, false, false);
    assertClose(out.subarray(i * m * n, (i + 1) * m * n), ref, 1e-4, 1e-4, `batch ${i}`);
  }
});

function refReduce(x: Float32Array, shape: number[], axis: number, op: "sum" | "max" | "argmax") {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const len = shape[axis];
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out = new Float32Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = op === "sum" ? 0 : -Infinity;
      let best = 0;
      for (let r = 0; r < len; r++) {
        const v = x[(o * len + r) * inner + i];
        if (op === "sum") acc += v;
        else if (v > acc) {
          acc = v;
          best = r;
        }
      }
      out[o * inner + i] = op === "argmax" ? best : acc;
    }
  }
  return out;
}

for (const shape of [[3, 5, 7], [2, 300, 3], [1000, 2]]) {
  for (let axis = 0; axis < shape.length; axis++) {
    Deno.test(`reduce sum/max/argmax over axis ${axis} of [${shape}]`, async () => {
      const data = randomData(shape.reduce((a, b) => a * b, 1), axis + 7, -10, 10);
      const x = tensor(data, shape);
      assertClose(
        await ops.sum(x, axis).data(),
        refReduce(data, shape, axis, "sum"),
        1e-3,
        1e-4,
        "sum",
      );
      assertClose(await ops.max(x, axis).data(), refReduce(data, shape, axis, "max"), 0, 0, "max");
      assertClose(
        await ops.argmax(x, axis).data(),
        refReduce(data, shape, axis, "argmax"),
        0,
        0,
        "argmax",
      );
      x.dispose();
    });
  }
}

Deno.test("reduce: long rows use the workgroup variant and match", async () => {
  const data = randomData(3 * 5000, 3);
  const x = tensor(data, [3, 5000]);
  assertClose(await x.sum(1).data(), refReduce(data, [3, 5000], 1, "sum"), 1e-2, 1e-4, "sum");
  assertClose(await x.max(1).data(), refReduce(data, [3, 5000], 1, "max"), 0, 0, "max");
  assertClose(await x.argmax(1).data(), refReduce(data, [3, 5000], 1, "argmax"), 0, 0, "argmax");
  assertClose(await x.sum().data(), [data.reduce((a, b) => a + b, 0)], 1e-2, 1e-4, "sum all");
});

Deno.test("logsumexp and softmax are stable for large magnitudes", async () => {
  const x = tensor([[1000, 1000, 999], [-1000, -1001, -1000], [0, 50, -50]]);
  const lse = await x.logsumexp(1).data();
  const ref = [[1000, 1000, 999], [-1000, -1001, -1000], [0, 50, -50]].map((row) => {
    const m = Math.max(...row);
    return m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
  });
  assertClose(lse, ref, 1e-3, 1e-6, "logsumexp");
  const sm = await x.softmax(1).data();
  for (const v of sm) assert.ok(Number.isFinite(v), "softmax produced a non-finite value");
  assertClose(sm.subarray(0, 3), [0.4223188, 0.4223188, 0.1553624], 1e-5, 1e-4, "softmax row 0");
  const sig = await tensor([-100, 100, 0]).sigmoid().data();
  assertClose(sig, [0, 1, 0.5], 1e-6, 0, "sigmoid");
  const sp = await ops.unary("softplus", tensor([-100, 100, 0, 2, NaN, Infinity, -Infinity]))
    .data();
  assertClose(
    sp.subarray(0, 4),
    [0, 100, Math.LN2, Math.log1p(Math.exp(2))],
    1e-6,
    1e-6,
    "softplus",
  );
  assert.ok(Number.isNaN(sp[4]), "softplus(NaN)");
  assert.deepEqual([sp[5], sp[6]], [Infinity, 0], "softplus(+-Inf)");
  const th = await tensor([-100, 100, 0.5]).tanh().data();
  assertClose(th, [-1, 1, Math.tanh(0.5)], 1e-6, 1e-6, "tanh");
});

Deno.test("NaN and Inf propagate (checked by bit pattern)", async () => {
  const x = tensor([NaN, Infinity, -Infinity, 1]);
  const isNan = await ops.unary("isnan", x).data();
  const isInf = await ops.unary("isinf", x).data();
  assert.deepEqual([...isNan], [1, 0, 0, 0]);
  assert.deepEqual([...isInf], [0, 1, 1, 0]);
  const sum = await x.add(ones([4])).data();
  assert.ok(Number.isNaN(sum[0]));
  assert.equal(sum[1], Infinity);
  assert.equal(sum[2], -Infinity);
  assert.ok(Number.isNaN((await x.relu().data())[0]), "relu(NaN) must be NaN");
  assert.ok(Number.isNaN(await x.max().item()), "max over a NaN must be NaN");
  assert.ok(Number.isNaN(await x.sum().item()), "sum with NaN must be NaN");
  assert.ok(Number.isNaN((await x.maximum(ones([4])).data())[0]), "maximum(NaN, 1) must be NaN");
  assert.equal((await tensor([Infinity]).exp().data())[0], Infinity);
  assert.equal((await tensor([0]).log().data())[0], -Infinity);
});

Deno.test("movement ops match references", async () => {
  const x = tensor([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(await x.transpose().array(), [[1, 4], [2, 5], [3, 6]]);
  assert.deepEqual(await x.slice([0, 1], [2, 3]).array(), [[2, 3], [5, 6]]);
  assert.deepEqual(await x.pad([[0, 1], [1, 0]]).array(), [[0, 1, 2, 3], [0, 4, 5, 6], [
    0,
    0,
    0,
    0,
  ]]);
  assert.deepEqual(await x.concat([tensor([[7, 8, 9]])], 0).array(), [[1, 2, 3], [4, 5, 6], [
    7,
    8,
    9,
  ]]);
  assert.deepEqual(await tensor([[1], [2]]).expand([2, 3]).array(), [[1, 1, 1], [2, 2, 2]]);
  assert.deepEqual(await x.reshape([3, -1]).array(), [[1, 2], [3, 4], [5, 6]]);
  const p = tensor(Float32Array.from({ length: 24 }, (_, i) => i), [2, 3, 4]).permute([2, 0, 1]);
  const pd = await p.data();
  assert.equal(pd[1 * 6 + 1 * 3 + 2], 1 * 12 + 2 * 4 + 1); // p[1,1,2] = x[1,2,1]
  assert.deepEqual([...(await tensor([1.7, -1.7]).cast("i32").data())], [1, -1]);
});

Deno.test("elementwise: vec4 and scalar paths agree with references", async () => {
  for (const n of [4096, 4095, 8, 6]) {
    const a = randomData(n, n);
    const b = randomData(n, n + 1, 0.5, 2);
    const ta = tensor(a);
    const tb = tensor(b);
    const s = tensor([2.5]);
    assertClose(await ta.add(tb).data(), a.map((v, i) => v + b[i]), 1e-6, 1e-6, `add ${n}`);
    assertClose(await ta.div(tb).data(), a.map((v, i) => v / b[i]), 1e-6, 1e-5, `div ${n}`);
    assertClose(await ta.mul(s).data(), a.map((v) => v * 2.5), 1e-6, 1e-6, `mul scalar ${n}`);
    assertClose(await ta.relu().data(), a.map((v) => Math.max(v, 0)), 0, 0, `relu ${n}`);
    assertClose(await ta.exp().data(), a.map(Math.exp), 1e-6, 1e-5, `exp ${n}`);
    const sl = await ta.slice([4], [n]).data();
    assertClose(sl, a.subarray(4), 0, 0, `slice offset ${n}`);
  }
});

Deno.test("scalar constants do not compile a pipeline per value", async () => {
  const x = tensor([1, 2, 3]);
  x.mul(0.5).dispose(); // warm up the pipeline
  const before = backend().stats.pipelines;
  for (let i = 0; i < 50; i++) x.mul(i * 0.37).add(i).dispose();
  const out = ops.fill_(ops.empty([3]), 7.25);
  assert.deepEqual([...(await out.data())], [7.25, 7.25, 7.25]);
  assert.ok(backend().stats.pipelines - before <= 2, "each distinct constant compiled a kernel");
  assert.deepEqual([...(await x.mul(3).add(-1).data())], [2, 5, 8]);
});
