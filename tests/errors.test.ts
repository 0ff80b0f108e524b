/** Bad input gets a clear error naming the op, the shapes and the fix. */

import assert from "node:assert/strict";
import { tensor, zeros } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { tidy } from "../tensor/tensor.ts";
import { backend } from "../gpu/backend.ts";
import { numberLines, WebGPUBackend } from "../gpu/webgpu/backend.ts";
import { setup } from "./helpers.ts";

await setup();

Deno.test("shape mismatch names the op and both shapes", () => {
  const a = zeros([2, 3]);
  const b = zeros([4, 3]);
  assert.throws(() => a.add(b), /add: shapes \[2,3\] and \[4,3\] cannot be broadcast/);
  assert.throws(() => a.matmul(b), /matmul: inner dimensions differ: \[2,3\] @ \[4,3\] \(3 vs 4\)/);
  assert.throws(
    () => a.reshape([5]),
    /reshape: cannot reshape Tensor\[2,3\] f32 \(6 elements\) to \[5\]/,
  );
  assert.throws(() => ops.concat([a, zeros([2, 2, 1])], 0), /concat: shapes must agree/);
  assert.throws(() => a.sum(2), /sum: axis 2 is out of range for a tensor with 2 dims/);
  assert.throws(() => tensor([1, 2, 3], [2, 2]), /3 values do not fill shape \[2,2\]/);
});

Deno.test("an unknown dtype is refused with the fix (was: a tensor of unknown dtype)", () => {
  const bad = "int32" as unknown as "i32";
  assert.throws(() => tensor([1, 2], [2], bad), /tensor: unknown dtype 'int32' \(use 'i32'; /);
  assert.throws(() => zeros([2], "f64" as unknown as "f32"), /dtypes are f32, i32, u32/);
});

Deno.test("using a disposed tensor says so", () => {
  const a = zeros([2, 3]);
  a.dispose();
  assert.throws(() => a.exp(), /exp: Tensor\[2,3\] f32 \(made by 'full'\) was disposed/);
  const kept = tidy(() => {
    const inner = zeros([2]);
    return { leaked: inner.add(1), gone: inner };
  });
  assert.ok(!kept.leaked.isDisposed);
  const inner = tidy(() => zeros([3]).exp());
  assert.ok(!inner.isDisposed, "returned tensors survive the scope");
  const lost = { t: null as null | ReturnType<typeof zeros> };
  tidy(() => {
    lost.t = zeros([3]);
  });
  assert.throws(() => lost.t!.neg(), /was disposed/);
});

Deno.test("backward on a non-scalar or no-grad tensor explains why", () => {
  const a = zeros([2]).requiresGrad_();
  assert.throws(() => a.exp().backward(), /is not a scalar/);
  assert.throws(() => zeros([1]).exp().backward(), /does not require grad/);
});

const webgpu = backend() instanceof WebGPUBackend;

Deno.test({
  name: "a WGSL error is reported with the numbered shader source",
  ignore: !webgpu,
}, async () => {
  assert.equal(numberLines("a\nb"), "   1| a\n   2| b");
  const be = backend() as WebGPUBackend;
  const out = zeros([4]);
  const code = `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1)
fn main() { out[0] = undefined_name; }`;
  be.runWgsl("broken", code, [out.refFor("t")], ["read_write"], [1, 1, 1]);
  await assert.rejects(
    async () => {
      await be.sync();
      await out.data();
    },
    (err: Error) => {
      assert.match(err.message, /WGSL kernel 'broken' failed to compile/);
      assert.match(err.message, / {3}3\| fn main\(\) \{ out\[0\] = undefined_name; \}/);
      return true;
    },
  );
  // The device stays usable afterwards.
  assert.equal(await tensor([2]).mul(3).item(), 6);
});

Deno.test({
  name: "a lost device turns a pending read into a clear error, not a hang",
  ignore: !webgpu,
}, async () => {
  // In a subprocess: destroying the device must not affect other tests.
  const script = `
    import { init } from "${new URL("../gpu/backend.ts", import.meta.url)}";
    import { tensor } from "${new URL("../tensor/functional.ts", import.meta.url)}";
    const be = await init({ backend: "webgpu" });
    const t = tensor([1, 2, 3]).mul(2);
    be.device.destroy();
    try { await t.data(); console.log("no error"); } catch (e) { console.log(e.message); }
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    env: { XDG_RUNTIME_DIR: "/tmp" },
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /The WebGPU device was lost/);
});
