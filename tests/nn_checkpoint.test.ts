/**
 * Checkpoints: exact round trips (special float values, i32, metadata, a model with buffers and
 * its optimizer state), the safetensors layout, validation of untrusted files (each corruption
 * gives a clear error), and loadInto's name/shape report.
 */

import assert from "node:assert/strict";
import { Generator } from "../gpu/random.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany, tidy } from "../tensor/tensor.ts";
import { BatchNorm1d, Linear, Sequential } from "../nn/layers.ts";
import { FlatParams } from "../nn/module.ts";
import { Adam } from "../nn/optim.ts";
import { mse } from "../nn/losses.ts";
import {
  type Checkpoint,
  loadCheckpoint,
  loadInto,
  saveCheckpoint,
  stateDict,
  toTensor,
} from "../nn/checkpoint.ts";
import { randomData, setup } from "./helpers.ts";

await setup();

const bits = (
  a: ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; length: number },
) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** Writes a file of `header` JSON (as given, unpadded) followed by `data` bytes. */
async function rawFile(
  dir: string,
  header: string | Uint8Array,
  data = new Uint8Array(0),
  len?: bigint,
) {
  const h = typeof header === "string" ? new TextEncoder().encode(header) : header;
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, len ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  const path = `${dir}/${crypto.randomUUID()}.safetensors`;
  await Deno.writeFile(path, out);
  return path;
}

Deno.test("checkpoint: round trip is bit-exact (NaN payloads, -0, denormals, Inf, i32, metadata)", async () => {
  const dir = await Deno.makeTempDir();
  const special = new Float32Array(
    new Uint32Array([
      0x7fc00001, // NaN with a payload
      0x80000000, // -0
      0x00000001, // smallest denormal
      0x7f800000, // +Inf
      0xff800000, // -Inf
      0x3f800000,
    ]).buffer,
  );
  const gpu = tensor(special, [2, 3]);
  const ints = tensor(new Int32Array([-1, 0, 2147483647, -2147483648]), [4], "i32");
  const host = Float32Array.from([1.5, -2.25]);
  const empty = tensor(new Float32Array(0), [0, 3]);
  const meta = { note: "héllo ✓", json: '{"a":1}' };
  const path = `${dir}/ck.safetensors`;
  await saveCheckpoint(path, { gpu, ints, host, empty }, meta);
  assert.deepEqual(
    [...Deno.readDirSync(dir)].map((e) => e.name),
    ["ck.safetensors"],
    "no temp files left",
  );
  const ck = await loadCheckpoint(path);
  assert.deepEqual(ck.metadata, meta);
  assert.deepEqual([...ck.tensors.keys()], ["gpu", "ints", "host", "empty"]);
  const g = ck.tensors.get("gpu")!;
  assert.deepEqual([g.dtype, g.shape], ["F32", [2, 3]]);
  assert.deepEqual(bits(g.data), bits(special));
  const i = ck.tensors.get("ints")!;
  assert.deepEqual([i.dtype, i.shape, Array.from(i.data)], ["I32", [4], [
    -1,
    0,
    2147483647,
    -2147483648,
  ]]);
  assert.deepEqual(Array.from(ck.tensors.get("host")!.data), [1.5, -2.25]);
  assert.deepEqual(ck.tensors.get("empty")!.shape, [0, 3]);
  // Back onto the GPU, still exact.
  const [again] = await readMany(tidy(() => [toTensor(g)]));
  assert.deepEqual(bits(again as Float32Array), bits(special));
  // Layout: 8-byte LE length, an 8-byte aligned JSON header, then the data.
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assert.deepEqual(header.gpu, { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] });
  assert.deepEqual(header.ints.data_offsets, [24, 40]);
  assert.equal(bytes.length, 8 + n + 48);
  for (const t of [gpu, ints, empty]) t.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("checkpoint: a model (params + batch-norm buffers) and its Adam state restore exactly", async () => {
  const dir = await Deno.makeTempDir();
  const make = (seed: number) =>
    new Sequential(
      new Linear(3, 4, { gen: new Generator(seed) }),
      new BatchNorm1d(4),
      new Linear(4, 1, { gen: new Generator(seed + 1) }),
    );
  const train = (
    net: Sequential,
    flat: FlatParams,
    opt: Adam,
    x: ReturnType<typeof tensor>,
    y: ReturnType<typeof tensor>,
  ) => {
    flat.zeroGrad();
    tidy(() => mse(net.forward(x), y).backward());
    opt.step();
  };
  const a = make(1);
  const flatA = new FlatParams(a.namedParameters());
  const optA = new Adam(flatA, { lr: 0.01 });
  const x = tensor(randomData(12, 2), [4, 3]);
  const y = tensor(randomData(4, 3), [4, 1]);
  for (let k = 0; k < 3; k++) train(a, flatA, optA, x, y);
  const st = optA.state();
  const path = `${dir}/model.safetensors`;
  await saveCheckpoint(path, { ...stateDict(a, "model."), ...st.tensors }, st.metadata);
  for (const t of Object.values(st.tensors)) t.dispose();

  const b = make(7);
  const flatB = new FlatParams(b.namedParameters());
  const optB = new Adam(flatB, { lr: 0.01 });
  const ck = await loadCheckpoint(path);
  const report = loadInto(b, ck, { prefix: "model." });
  assert.equal(report.loaded.length, 8); // 6 parameters + 2 buffers
  optB.loadState(ck);
  const names = Object.keys(stateDict(a));
  const before = await readMany([...Object.values(stateDict(a)), ...Object.values(stateDict(b))]);
  names.forEach((n, k) =>
    assert.deepEqual(
      bits(before[k] as Float32Array),
      bits(before[k + names.length] as Float32Array),
      n,
    )
  );
  // Both continue identically.
  train(a, flatA, optA, x, y);
  train(b, flatB, optB, x, y);
  const [pa, pb] = await readMany([flatA.data, flatB.data]);
  assert.deepEqual(bits(pa as Float32Array), bits(pb as Float32Array));
  for (const t of [x, y]) t.dispose();
  for (const t of [optA, optB, flatA, flatB]) t.dispose();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("loadInto: reports missing, unexpected and shape mismatches together; writes nothing", async () => {
  const a = new Sequential(new Linear(3, 4), new Linear(4, 2));
  const ck: Checkpoint = {
    metadata: {},
    tensors: new Map([
      ["0.weight", { dtype: "F32", shape: [4, 3], data: new Float32Array(12).fill(7) }],
      ["0.bias", { dtype: "F32", shape: [5], data: new Float32Array(5) }],
      ["1.weight", { dtype: "I32", shape: [2, 4], data: new Int32Array(8) }],
      ["2.weight", { dtype: "F32", shape: [1], data: new Float32Array(1) }],
    ]),
  };
  const w0 = await a.parameters()[0].data();
  assert.throws(
    () => loadInto(a, ck),
    (e: Error) =>
      e.message.includes("missing (in the model, not in the checkpoint): 1.bias") &&
      e.message.includes("unexpected (in the checkpoint, not in the model): 2.weight") &&
      e.message.includes("0.bias: model [4] f32 vs checkpoint [5] f32") &&
      e.message.includes("1.weight: model [2,4] f32 vs checkpoint [2,4] i32"),
  );
  assert.deepEqual(await a.parameters()[0].data(), w0, "nothing written");
  // Non-strict: missing/unexpected allowed and reported; shape mismatches still fail.
  ck.tensors.delete("0.bias");
  ck.tensors.delete("1.weight");
  const report = loadInto(a, ck, { strict: false });
  assert.deepEqual(report, {
    loaded: ["0.weight"],
    missing: ["0.bias", "1.weight", "1.bias"],
    unexpected: ["2.weight"],
  });
  assert.deepEqual(Array.from(await a.parameters()[0].data()), new Array(12).fill(7));
  a.dispose();
});

Deno.test("loadCheckpoint: corrupt or hostile files give clear errors", async () => {
  const dir = await Deno.makeTempDir();
  const good = JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
  const data8 = new Uint8Array(8);
  const cases: [string, Promise<string>, RegExp][] = [
    [
      "short file",
      (async () => {
        const p = `${dir}/short`;
        await Deno.writeFile(p, new Uint8Array(5));
        return p;
      })(),
      /file is 5 bytes; a checkpoint starts with an 8-byte header length/,
    ],
    [
      "header past the end (truncated)",
      rawFile(dir, good, new Uint8Array(0), 1000n),
      /header length 1000 exceeds the \d+ bytes after the length field/,
    ],
    [
      "oversized header length",
      rawFile(dir, good, data8, 2n ** 40n),
      /header length 1099511627776 exceeds the 104857600-byte limit/,
    ],
    [
      "huge u64 header length",
      rawFile(dir, good, data8, 2n ** 64n - 1n),
      /exceeds the 104857600-byte limit/,
    ],
    ["garbage JSON", rawFile(dir, "{not json", data8), /header is not valid JSON/],
    [
      "invalid UTF-8",
      rawFile(dir, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), data8),
      /header is not valid UTF-8/,
    ],
    ["not an object", rawFile(dir, "[1,2]", data8), /header is not a JSON object/],
    [
      "truncated data",
      rawFile(dir, good, new Uint8Array(4)),
      /tensor 'w': data_offsets \[0, 8\] are out of range \(the data region holds 4 bytes\)/,
    ],
    [
      "offsets out of range",
      rawFile(
        dir,
        JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }),
        data8,
      ),
      /tensor 'w': data_offsets \[4, 12\] are out of range/,
    ],
    [
      "begin after end",
      rawFile(
        dir,
        JSON.stringify({ w: { dtype: "F32", shape: [0], data_offsets: [8, 4] } }),
        data8,
      ),
      /data_offsets \[8, 4\] are out of range/,
    ],
    [
      "size does not match shape",
      rawFile(
        dir,
        JSON.stringify({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }),
        data8,
      ),
      /tensor 'w': data_offsets \[0, 8\] hold 8 bytes but shape \[3\] of F32 needs 12/,
    ],
    [
      "overlapping tensors",
      rawFile(
        dir,
        JSON.stringify({
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "I32", shape: [1], data_offsets: [4, 8] },
        }),
        data8,
      ),
      /tensors 'a' \[0, 8\] and 'b' \[4, 8\] overlap/,
    ],
    [
      "unknown dtype",
      rawFile(
        dir,
        JSON.stringify({ w: { dtype: "F64", shape: [1], data_offsets: [0, 8] } }),
        data8,
      ),
      /tensor 'w': unknown dtype "F64"/,
    ],
    [
      "negative dim",
      rawFile(
        dir,
        JSON.stringify({ w: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } }),
        data8,
      ),
      /shape \[-2\] is not a list of non-negative integers/,
    ],
    [
      "fractional dim",
      rawFile(
        dir,
        JSON.stringify({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 8] } }),
        data8,
      ),
      /is not a list of non-negative integers/,
    ],
    [
      "bad offsets",
      rawFile(dir, JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [0] } }), data8),
      /data_offsets \[0\] is not \[begin, end\]/,
    ],
    [
      "huge shape",
      rawFile(
        dir,
        JSON.stringify({ w: { dtype: "F32", shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }),
        data8,
      ),
      /is too large/,
    ],
    [
      "non-string metadata",
      rawFile(dir, JSON.stringify({ __metadata__: { a: 1 } }), data8),
      /metadata 'a' is not a string/,
    ],
    [
      "entry not an object",
      rawFile(dir, JSON.stringify({ w: 3 }), data8),
      /tensor 'w': entry is not an object/,
    ],
  ];
  for (const [what, pathP, re] of cases) {
    const path = await pathP;
    await assert.rejects(loadCheckpoint(path), (e: Error) => {
      assert.match(e.message, re, what);
      assert.ok(e.message.startsWith(`loadCheckpoint(${path}): `), `${what}: names the file`);
      return true;
    });
  }
  // A hostile "__proto__" key is an ordinary metadata key or tensor name, never a prototype.
  const proto = await rawFile(
    dir,
    '{"__metadata__":{"__proto__":"x"},"__proto__":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
    data8,
  );
  const ck = await loadCheckpoint(proto);
  assert.equal(ck.metadata["__proto__"], "x");
  assert.equal(Object.getPrototypeOf(ck.metadata), Object.prototype);
  assert.deepEqual([...ck.tensors.keys()], ["__proto__"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("saveCheckpoint: rejects u32 tensors and reserved names", async () => {
  const u = tensor(new Uint32Array([1]));
  await assert.rejects(saveCheckpoint("/nonexistent/x", { u }), /only f32 and i32 are supported/);
  await assert.rejects(
    saveCheckpoint("/nonexistent/x", { __metadata__: new Float32Array(1) }),
    /invalid tensor name/,
  );
  u.dispose();
});
