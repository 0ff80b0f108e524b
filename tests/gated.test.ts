/**
 * Gated regions (`Backend.beginGated`, tensor/gated.ts `whenGpu`): a region with flag 1 gives the
 * plain composition's results bit for bit, with flag 0 it leaves every buffer as it was, for
 * several kernel families (matmul, reductions, fused maps, an Adam step, random fills), with no
 * host sync; pending tensors from before the region keep their values; the rules are checked.
 * Runs on whichever backend is selected (`AUTOLOSS_BACKEND=webgpu` for WebGPU).
 */

import assert from "node:assert/strict";
import { backend, GatedRegionError } from "../gpu/backend.ts";
import { Generator } from "../gpu/random.ts";
import { FlatParams } from "../nn/module.ts";
import { Adam } from "../nn/optim.ts";
import { randn, tensor } from "../tensor/functional.ts";
import { whenGpu } from "../tensor/gated.ts";
import * as ops from "../tensor/ops.ts";
import { keep, readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { randomData, setup } from "./helpers.ts";

await setup();

/** A few kernel families writing into `out` (in place, so flag 0 must leave it untouched). */
function work(a: Tensor, b: Tensor, out: Tensor[], gen: Generator): void {
  const c = ops.matmul(a, b); // matmul
  const s = ops.sum(c.mul(c).add(1), 1); // reduction with a fused prologue
  const m = ops.max(c, 0);
  const f = c.tanh().mul(a.sum().reshape([1, 1])).sub(b.mean()); // fused map over a reduction
  ops.assign_(out[0], c);
  ops.assign_(out[1], s);
  ops.assign_(out[2], m);
  ops.assign_(out[3], f);
  ops.assign_(out[4], randn([5], 0, 1, gen)); // a random fill (its parameters are uploaded)
}

function outputs(): Tensor[] {
  return [[6, 9], [6], [9], [6, 9], [5]].map((s) => keep(ops.fill_(ops.empty(s), -7)));
}

async function run(flag: number | null, dtype: "f32" | "i32" | "u32"): Promise<number[][]> {
  const a = keep(tensor(randomData(6 * 7, 1), [6, 7]));
  const b = keep(tensor(randomData(7 * 9, 2), [7, 9]));
  const out = outputs();
  const gen = new Generator(5);
  const syncs = backend().stats.hostSyncs;
  tidy(() => {
    if (flag === null) return work(a, b, out, gen);
    // The flag is computed on the GPU (from a value the host never sees in the region).
    const f = ops.cast(tensor(Float32Array.of(flag * 3), [1]).mul(1 / 3), dtype);
    whenGpu(f, () => work(a, b, out, gen));
  });
  assert.equal(backend().stats.hostSyncs, syncs, "a region costs no host sync");
  const v = (await readMany(out)).map((x) => Array.from(x));
  for (const t of [a, b, ...out]) t.dispose();
  return v;
}

Deno.test("gated region: flag 1 equals the plain composition, flag 0 changes nothing", async () => {
  const plain = await run(null, "f32");
  const untouched = outputs();
  const before = (await readMany(untouched)).map((x) => Array.from(x));
  for (const t of untouched) t.dispose();
  for (const dtype of ["f32", "i32", "u32"] as const) {
    assert.deepEqual(await run(1, dtype), plain, `flag 1 (${dtype})`);
    assert.deepEqual(await run(0, dtype), before, `flag 0 (${dtype})`);
  }
});

Deno.test("gated region: an Adam step runs or is skipped entirely (counter included)", async () => {
  const step = async (flag: number | null) => {
    const flat = new FlatParams(
      [["g.w", tensor(randomData(300, 3), [300])], ["d.w", tensor(randomData(5, 4), [5])]],
      { G: ["g."], D: ["d."] },
    );
    const opt = new Adam(flat, { lr: 0.01 });
    const go = () =>
      tidy(() => {
        flat.zeroGrad();
        for (const p of flat.params) ops.assign_(p.grad!, p.mul(p).add(0.5));
        opt.step("G");
      });
    for (let i = 0; i < 2; i++) {
      if (flag === null) go();
      else tidy(() => whenGpu(tensor(Int32Array.of(flag), [1], "i32"), go));
    }
    const counters = opt.state("o.").tensors;
    const v = (await readMany([...flat.params, ...Object.values(counters)])).map((x) =>
      Array.from(x)
    );
    opt.dispose();
    flat.dispose();
    return v;
  };
  const plain = await step(null);
  assert.deepEqual(await step(1), plain);
  const fresh = new FlatParams(
    [["g.w", tensor(randomData(300, 3), [300])], ["d.w", tensor(randomData(5, 4), [5])]],
    { G: ["g."], D: ["d."] },
  );
  const opt = new Adam(fresh, { lr: 0.01 });
  const init = (await readMany([...fresh.params, ...Object.values(opt.state("o.").tensors)]))
    .map((x) => Array.from(x));
  opt.dispose();
  fresh.dispose();
  assert.deepEqual(await step(0), init, "flag 0: parameters, moments and counter untouched");
});

Deno.test("gated region: pending tensors from before keep their values; complementary branches", async () => {
  const x = keep(tensor(randomData(16, 7), [16]));
  for (const on of [0, 1]) {
    const [r] = await readMany([tidy(() => {
      const before = x.mul(2).add(1); // pending: must not be computed under the flag
      const flag = tensor(Float32Array.of(on), [1]);
      const off = flag.neg().add(1);
      const dst = ops.fill_(ops.empty([16]), 0);
      whenGpu(flag, () => ops.assign_(dst, before.exp()));
      whenGpu(off, () => ops.assign_(dst, before.neg()));
      return keep(dst.add(before.mul(0)));
    })]);
    const [ref] = await readMany([
      tidy(() => keep(on ? x.mul(2).add(1).exp() : x.mul(2).add(1).neg())),
    ]);
    assert.deepEqual(Array.from(r), Array.from(ref), `flag ${on}`);
  }
  x.dispose();
});

Deno.test("gated region: rules are enforced with clear errors", async () => {
  const be = backend();
  const flag = keep(tensor(Float32Array.of(1), [1]));
  const t = keep(tensor([1, 2, 3, 4]));
  const expectError = (fn: () => void, re: RegExp) =>
    assert.throws(() => tidy(() => whenGpu(flag, fn)), (e: Error) => {
      assert.ok(e instanceof GatedRegionError, String(e));
      assert.match(e.message, re);
      return true;
    });
  expectError(() => whenGpu(flag, () => {}), /do not nest/);
  expectError(
    () => be.copy(t.storageFor("t"), 0, t.storageFor("t"), 4, 4),
    /copy .*inside a gated region/,
  );
  expectError(() => {
    ops.assign_(t, t.add(1));
    be.write(t.storageFor("t"), Float32Array.of(9));
  }, /host write/);
  assert.throws(() => whenGpu(t, () => {}), /one element/);
  // A read inside is refused (and the region closed).
  be.beginGated(flag.refFor("t"), "f32");
  await assert.rejects(
    async () => await be.read([{ storage: t.storageFor("t"), offset: 0, bytes: 4 }]),
    /read inside/,
  );
  be.endGated();
  // After the errors, the backend works and regions were closed.
  const [v] = await readMany([t]);
  assert.equal(v.length, 4);
  flag.dispose();
  t.dispose();
});

Deno.test("whenGpu: what the branch creates and does not return is freed at the region's end", async () => {
  const flag = tensor([1], [1]);
  let temp: Tensor | null = null;
  const out = whenGpu(flag, () => {
    temp = tensor([1, 2, 3], [3]).add(1);
    return temp.mul(2);
  });
  assert.ok(temp !== null && (temp as Tensor).isDisposed, "the temporary was freed");
  assert.ok(!out.isDisposed);
  assert.deepEqual(Array.from(await out.data()), [4, 6, 8]);
  out.dispose();
  flag.dispose();
});
