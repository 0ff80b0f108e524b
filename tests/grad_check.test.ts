/**
 * Central-difference gradient checks for every differentiable primitive and composite op, on
 * shapes that include broadcasting and sizes that are not multiples of 4.
 */

import * as ops from "../tensor/ops.ts";
import * as F from "../tensor/functional.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { gradCheck, type GradInput, randomData, setup } from "./helpers.ts";

await setup();

const inp = (shape: number[], seed: number, lo = -1, hi = 1, gap = 0): GradInput => ({
  data: randomData(shape.reduce((a, b) => a * b, 1), seed, lo, hi, gap),
  shape,
});

const unaryCases: [string, (x: Tensor) => Tensor, GradInput][] = [
  ["neg", (x) => x.neg(), inp([3, 5], 1)],
  ["exp", (x) => x.exp(), inp([3, 5], 2)],
  ["log", (x) => x.log(), inp([3, 5], 3, 0.5, 2)],
  ["sqrt", (x) => x.sqrt(), inp([7], 4, 0.5, 2)],
  ["abs", (x) => x.abs(), inp([2, 3, 3], 5, -1, 1, 0.1)],
  ["tanh", (x) => x.tanh(), inp([3, 5], 6, -2, 2)],
  ["sigmoid", (x) => x.sigmoid(), inp([3, 5], 7, -3, 3)],
  ["softplus", (x) => ops.unary("softplus", x), inp([3, 5], 18, -4, 4)],
  ["relu", (x) => x.relu(), inp([3, 5], 8, -1, 1, 0.1)],
  ["leakyRelu", (x) => x.leakyRelu(0.2), inp([3, 5], 9, -1, 1, 0.1)],
  ["sin", (x) => ops.unary("sin", x), inp([5], 10)],
  ["cos", (x) => ops.unary("cos", x), inp([5], 11)],
  ["recip", (x) => ops.unary("recip", x), inp([5], 12, 0.5, 2)],
  ["square", (x) => x.square(), inp([3, 5], 13)],
  ["add scalar", (x) => x.add(3), inp([3, 5], 14)],
  ["mul scalar", (x) => x.mul(-2.5), inp([3, 5], 15)],
  ["pow scalar", (x) => x.pow(3), inp([3, 5], 16)],
  ["clamp", (x) => x.clamp(-0.5, 0.5), inp([3, 5], 17, -1, 1, 0.05)],
  ["sum all", (x) => x.sum(), inp([3, 5], 18)],
  ["sum axis 0", (x) => x.sum(0), inp([3, 5], 19)],
  ["sum axes 0,2 keepdim", (x) => x.sum([0, 2], true), inp([2, 3, 5], 20)],
  ["mean axis 1", (x) => x.mean(1), inp([3, 5], 21)],
  ["max axis 1", (x) => x.max(1), inp([3, 5], 22)],
  ["max all", (x) => x.max(), inp([3, 5], 23)],
  ["logsumexp", (x) => x.logsumexp(1), inp([3, 5], 24, -3, 3)],
  ["softmax", (x) => x.softmax(-1), inp([3, 5], 25, -3, 3)],
  ["logSoftmax axis 0", (x) => x.logSoftmax(0), inp([3, 5], 26, -3, 3)],
  ["variance", (x) => F.variance(x, 0), inp([4, 3], 27)],
  ["reshape", (x) => x.reshape([5, 3]).mul(x.reshape([5, 3])), inp([3, 5], 28)],
  ["permute", (x) => x.permute([2, 0, 1]), inp([2, 3, 5], 29)],
  ["transpose", (x) => x.transpose(), inp([3, 5], 30)],
  ["expand", (x) => x.expand([4, 3, 5]), inp([3, 1], 31)],
  ["slice", (x) => x.slice([1, 0, 2], [3, 3, 5]), inp([3, 3, 5], 32)],
  ["pad", (x) => x.pad([[1, 2], [0, 3]]), inp([3, 5], 33)],
];

for (const [name, fn, input] of unaryCases) {
  Deno.test(`grad: ${name}`, async () => {
    await gradCheck(name, fn, [input]);
  });
}

const binaryCases: [string, (a: Tensor, b: Tensor) => Tensor, GradInput, GradInput][] = [
  ["add broadcast", (a, b) => a.add(b), inp([3, 5], 40), inp([5], 41)],
  ["sub broadcast", (a, b) => a.sub(b), inp([3, 1], 42), inp([1, 5], 43)],
  ["mul broadcast", (a, b) => a.mul(b), inp([2, 3, 5], 44), inp([3, 1], 45)],
  ["div broadcast", (a, b) => a.div(b), inp([3, 5], 46), inp([3, 1], 47, 0.5, 2)],
  ["pow", (a, b) => a.pow(b), inp([3, 5], 48, 0.5, 2), inp([5], 49)],
  ["maximum", (a, b) => a.maximum(b), inp([3, 5], 50), inp([3, 5], 51)],
  ["minimum broadcast", (a, b) => a.minimum(b), inp([3, 5], 52), inp([5], 53)],
  ["matmul 2d", (a, b) => a.matmul(b), inp([3, 5], 54), inp([5, 7], 55)],
  ["matmul transA", (a, b) => ops.matmul(a, b, true, false), inp([5, 3], 56), inp([5, 7], 57)],
  ["matmul transB", (a, b) => ops.matmul(a, b, false, true), inp([3, 5], 58), inp([7, 5], 59)],
  ["matmul both", (a, b) => ops.matmul(a, b, true, true), inp([5, 3], 60), inp([7, 5], 61)],
  ["matmul batched", (a, b) => a.matmul(b), inp([2, 3, 5], 62), inp([2, 5, 6], 63)],
  ["matmul batch broadcast", (a, b) => a.matmul(b), inp([2, 3, 5], 64), inp([5, 6], 65)],
  ["matmul vector", (a, b) => a.matmul(b), inp([3, 5], 66), inp([5], 67)],
  ["matmul blocked 33x20x36", (a, b) => a.matmul(b), inp([33, 20], 68), inp([20, 36], 69)],
  ["concat axis 1", (a, b) => ops.concat([a, b], 1), inp([3, 2], 70), inp([3, 5], 71)],
  ["logsumexp of sum", (a, b) => a.add(b).logsumexp(0), inp([4, 3], 72), inp([3], 73)],
];

for (const [name, fn, a, b] of binaryCases) {
  Deno.test(`grad: ${name}`, async () => {
    await gradCheck(name, fn, [a, b]);
  });
}

Deno.test("grad: where", async () => {
  const cond: GradInput = {
    data: Float32Array.from([1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1]),
    shape: [3, 5],
  };
  // The condition is data, not a variable: close over it.
  const c = F.tensor(cond.data, cond.shape);
  await gradCheck("where", (a, b) => ops.where(c, a, b), [inp([3, 5], 80), inp([5], 81)]);
  c.dispose();
});

Deno.test("grad: gatherRows (embedding)", async () => {
  const idx = Int32Array.from([2, 0, 2, 4, 1, -1]); // -1 is ignored: its row reads 0.
  await gradCheck("gatherRows", (t, i) => ops.gatherRows(t, i), [
    inp([5, 3], 82),
    { data: idx, shape: [2, 3], dtype: "i32" },
  ]);
});

Deno.test("grad: scatterAddRows", async () => {
  const idx = Int32Array.from([1, 0, 1, 3]);
  await gradCheck("scatterAddRows", (s, i) => ops.scatterAddRows(s, i, 4), [
    inp([4, 3], 83),
    { data: idx, shape: [4], dtype: "i32" },
  ]);
});

Deno.test("grad: pick / unpick (cross-entropy indexing)", async () => {
  const idx = { data: Int32Array.from([2, 0, 4]), shape: [3], dtype: "i32" as const };
  await gradCheck("pick", (x, i) => ops.pick(x.logSoftmax(-1), i), [inp([3, 5], 84), idx]);
  await gradCheck("unpick", (g, i) => ops.unpick(g, i, 5), [inp([3], 85), idx]);
});

Deno.test("grad: shared subexpression (diamond graph)", async () => {
  await gradCheck("diamond", (x) => {
    const y = x.tanh();
    return y.mul(y).add(y.exp());
  }, [inp([2, 3], 86)]);
});
