/**
 * Engine acceptance: a 1,000-step training loop of a small MLP (batch 16, 8 -> 16 -> 1, Adam over
 * FlatParams, each step inside `tidy`) keeps the number of live GPU storages flat after the first
 * steps, compiles no new pipelines after the first step, and never syncs with the host inside
 * the loop.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { Generator } from "../gpu/random.ts";
import { tensor } from "../tensor/functional.ts";
import { tidy } from "../tensor/tensor.ts";
import { Linear, ReLU, Sequential } from "../nn/layers.ts";
import { FlatParams } from "../nn/module.ts";
import { Adam } from "../nn/optim.ts";
import { mse } from "../nn/losses.ts";
import { randomData, setup } from "./helpers.ts";

await setup();

Deno.test("memory: 1,000 Adam steps of an MLP keep live storages flat", async () => {
  const be = backend();
  const net = new Sequential(
    new Linear(8, 16, { gen: new Generator(1) }),
    new ReLU(),
    new Linear(16, 1, { gen: new Generator(2) }),
  );
  const flat = new FlatParams(net.namedParameters());
  const opt = new Adam(flat, { lr: 1e-2 });
  // A learnable target: y = sum of the first half of x minus the second half.
  const xData = randomData(16 * 8, 3);
  const yData = Float32Array.from({ length: 16 }, (_, r) => {
    let s = 0;
    for (let j = 0; j < 8; j++) s += (j < 4 ? 1 : -1) * xData[r * 8 + j];
    return s;
  });
  const x = tensor(xData, [16, 8]);
  const y = tensor(yData, [16, 1]);
  const step = () =>
    tidy(() => {
      flat.zeroGrad();
      const loss = mse(net.forward(x), y);
      loss.backward();
      opt.step();
      return loss;
    });
  const first = step();
  const initial = await first.item();
  first.dispose();
  for (let k = 0; k < 5; k++) step().dispose();
  const live = be.stats.liveStorages;
  const pipelines = be.stats.pipelines;
  const syncs = be.stats.hostSyncs;
  const samples: number[] = [];
  let last = null;
  for (let k = 0; k < 1000; k++) {
    last?.dispose();
    last = step();
    if (k % 100 === 0) samples.push(be.stats.liveStorages);
  }
  assert.equal(be.stats.hostSyncs, syncs, "no host sync inside the loop");
  const final = await last!.item();
  last!.dispose();
  assert.deepEqual(
    samples,
    new Array(samples.length).fill(live + 1),
    "live storages flat (+1: last loss)",
  );
  assert.equal(be.stats.liveStorages, live, "back to the baseline after disposing the last loss");
  assert.equal(be.stats.pipelines, pipelines, "no pipeline compiled after warm-up");
  assert.ok(final < initial * 0.05, `loss fell from ${initial} to ${final}`);
  for (const t of [x, y]) t.dispose();
  opt.dispose();
  flat.dispose();
});
