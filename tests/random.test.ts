/** The counter-based GPU RNG: reproducible from a seed, with the right moments. */

import assert from "node:assert/strict";
import { Generator } from "../gpu/random.ts";
import * as ops from "../tensor/ops.ts";
import { bernoulli, rand, randn, tensor } from "../tensor/functional.ts";
import { setup } from "./helpers.ts";

await setup();

function moments(x: ArrayLike<number>): { mean: number; variance: number } {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i];
  const mean = s / x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i] - mean) ** 2;
  return { mean, variance: v / x.length };
}

Deno.test("same seed gives the same draws; another seed differs", async () => {
  const a = await randn([1000], 0, 1, new Generator(42)).data();
  const b = await randn([1000], 0, 1, new Generator(42)).data();
  const c = await randn([1000], 0, 1, new Generator(43)).data();
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // Consecutive draws from one generator differ, and restoring the state replays them.
  const g = new Generator(7);
  const first = await rand([64], 0, 1, g).data();
  const state = g.state();
  const second = await rand([64], 0, 1, g).data();
  assert.notDeepEqual(first, second);
  g.setState(state);
  assert.deepEqual(await rand([64], 0, 1, g).data(), second);
});

Deno.test("uniform, normal and bernoulli have the right moments", async () => {
  const n = 20000;
  const u = moments(await rand([n], -1, 3, new Generator(1)).data());
  assert.ok(Math.abs(u.mean - 1) < 0.05, `uniform mean ${u.mean}`);
  assert.ok(Math.abs(u.variance - 16 / 12) < 0.05, `uniform var ${u.variance}`);
  const z = moments(await randn([n], 2, 0.5, new Generator(2)).data());
  assert.ok(Math.abs(z.mean - 2) < 0.02, `normal mean ${z.mean}`);
  assert.ok(Math.abs(z.variance - 0.25) < 0.02, `normal var ${z.variance}`);
  const b = moments(await bernoulli([n], 0.3, new Generator(3)).data());
  assert.ok(Math.abs(b.mean - 0.3) < 0.02, `bernoulli mean ${b.mean}`);
});

Deno.test("categorical follows the row weights", async () => {
  const rows = 4000;
  const w = new Float32Array(rows * 3);
  for (let r = 0; r < rows; r++) w.set([0.2, 0, 0.8], r * 3);
  const draws = await ops.categorical(tensor(w, [rows, 3]), new Generator(5)).data();
  const counts = [0, 0, 0];
  for (const d of draws) counts[d]++;
  assert.equal(counts[1], 0, "a zero-weight category was drawn");
  assert.ok(Math.abs(counts[0] / rows - 0.2) < 0.03, `p0 ${counts[0] / rows}`);
});
