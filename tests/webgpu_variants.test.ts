/**
 * WebGPU kernel variants meant for hardware GPUs, forced and tested on whatever adapter runs
 * (llvmpipe in CI): the workgroup-memory tiled matmul and split-K against a plain-TypeScript
 * reference (odd sizes, every transpose, batched with broadcast operands), two-pass reductions
 * and norms (also gated) against the one-pass kernels, the hardware default choices, and the
 * autotuner's deterministic fallback and its cache. Ignored on the CPU backend.
 */

import assert from "node:assert/strict";
import { backend, type BufferRef, type Gate, type Storage } from "../gpu/backend.ts";
import { E, type KernelSpec, type MatmulSpec } from "../gpu/kernel.ts";
import {
  defaultMatmulPlan,
  forceMatmul,
  forceReduceSplit,
  isHardwareAdapter,
  matmulPlan,
  setHardwareAdapter,
} from "../gpu/webgpu/render.ts";
import {
  LARGE_BLOCK,
  SMALL_BLOCK,
  TILE_128x64,
  TILE_64,
  TILE_64_8x8,
  type TileConfig,
} from "../gpu/webgpu/shaders/matmul.ts";
import {
  autotuneEnabled,
  autotuneMatmul,
  clearTuning,
  matmulClass,
  setAutotune,
  setTuneCacheFile,
  tunedMatmulChoices,
} from "../gpu/webgpu/autotune.ts";
import { envGet } from "../gpu/backend.ts";
import { assertClose, randomData, setup } from "./helpers.ts";

await setup();

const ignore = backend().info.kind !== "webgpu";

/** Runs `spec` over `inputs` (f32 or i32 arrays) into a fresh `outLen`-element output. */
async function runSpec(
  spec: KernelSpec,
  inputs: (Float32Array | Int32Array)[],
  outLen: number,
  gate?: Gate,
  init?: Float32Array,
): Promise<ArrayBuffer> {
  const be = backend();
  const stores: Storage[] = [];
  const refs: BufferRef[] = inputs.map((x) => {
    const s = be.alloc(Math.max(4, x.byteLength));
    be.write(s, x);
    stores.push(s);
    return { storage: s, offset: 0, numel: x.length };
  });
  const out = be.alloc(outLen * 4);
  be.write(out, init ?? new Float32Array(outLen));
  stores.push(out);
  refs.push({ storage: out, offset: 0, numel: outLen });
  be.run(spec, refs, gate);
  const [data] = await be.read([{ storage: out, offset: 0, bytes: outLen * 4 }]);
  for (const s of stores) be.release(s);
  return data;
}

function refMatmul(s: MatmulSpec, a: Float32Array, b: Float32Array): Float32Array {
  const { m, k, n } = s;
  const c = new Float32Array(s.batch * m * n);
  for (let t = 0; t < s.batch; t++) {
    const ao = t * s.batchStrideA;
    const bo = t * s.batchStrideB;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) {
          const x = s.transA ? a[ao + p * m + i] : a[ao + i * k + p];
          const y = s.transB ? b[bo + j * k + p] : b[bo + p * n + j];
          acc += x * y;
        }
        c[t * m * n + i * n + j] = acc;
      }
    }
  }
  return c;
}

function spec(
  m: number,
  k: number,
  n: number,
  transA: boolean,
  transB: boolean,
  batch = 1,
  broadcast: "" | "A" | "B" = "",
): MatmulSpec {
  return {
    batch,
    m,
    k,
    n,
    transA,
    transB,
    batchStrideA: broadcast === "A" ? 0 : m * k,
    batchStrideB: broadcast === "B" ? 0 : k * n,
  };
}

async function checkMatmul(s: MatmulSpec, what: string): Promise<void> {
  const aLen = s.batchStrideA ? s.batch * s.batchStrideA : s.m * s.k;
  const bLen = s.batchStrideB ? s.batch * s.batchStrideB : s.k * s.n;
  const a = randomData(aLen, s.m * 7 + s.k);
  const b = randomData(bLen, s.n * 13 + s.k);
  const got = new Float32Array(
    await runSpec({ kind: "matmul", ...s }, [a, b], s.batch * s.m * s.n),
  );
  // ~1e-4 relative to the size of the terms (sum of |a||b| is about k/4 for these inputs).
  const atol = 1e-5 * Math.max(1, s.k);
  assertClose(got, refMatmul(s, a, b), atol, 1e-4, what);
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [7, 13, 5],
  [33, 17, 29],
  [64, 64, 64],
  [72, 36, 132],
  [129, 65, 67],
  [5, 100, 3],
  [128, 40, 200],
];

const TILES: Record<string, TileConfig> = {
  "64x64/4x4": TILE_64,
  "128x64/8x4": TILE_128x64,
  "64x64/8x8": TILE_64_8x8,
  "32x64/4x8 bk8": { tm: 32, tn: 64, bk: 8, rm: 4, rn: 8 },
  "64x32/8x4 bk32": { tm: 64, tn: 32, bk: 32, rm: 8, rn: 4 },
};

for (const [tileName, tile] of Object.entries(TILES)) {
  Deno.test({
    name: `webgpu tiled matmul ${tileName}: odd shapes, every transpose`,
    ignore,
    async fn() {
      forceMatmul({ variant: "tiled", tile });
      try {
        for (const [m, k, n] of tile === TILE_64 ? SHAPES : SHAPES.slice(1, 6)) {
          for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
            await checkMatmul(spec(m, k, n, ta, tb), `${m}x${k}x${n} tA=${ta} tB=${tb}`);
          }
        }
      } finally {
        forceMatmul(null);
      }
    },
  });
}

Deno.test({
  name: "webgpu tiled matmul: batched, broadcast operands, unaligned batch strides",
  ignore,
  async fn() {
    forceMatmul({ variant: "tiled", tile: TILE_64 });
    try {
      for (const bc of ["", "A", "B"] as const) {
        for (const [ta, tb] of [[false, false], [true, true], [false, true]]) {
          await checkMatmul(spec(20, 24, 36, ta, tb, 3, bc), `batched ${bc} tA=${ta} tB=${tb}`);
          // Odd sizes make the batch strides unaligned for vec4 reads.
          await checkMatmul(spec(9, 7, 13, ta, tb, 3, bc), `odd batched ${bc} tA=${ta}`);
        }
      }
    } finally {
      forceMatmul(null);
    }
  },
});

Deno.test({
  name: "webgpu split-K matmul (blocked and tiled): long contractions, batched, odd k",
  ignore,
  async fn() {
    const plans = [
      { variant: "tiled" as const, tile: TILE_64, splitK: 4 },
      { variant: "tiled" as const, tile: TILE_128x64, splitK: 3 },
      { variant: "blocked" as const, block: SMALL_BLOCK, splitK: 5 },
      { variant: "blocked" as const, block: LARGE_BLOCK, splitK: 2 },
    ];
    const shapes: [number, number, number, number][] = [
      [16, 1024, 16, 1],
      [33, 777, 29, 1],
      [64, 2048, 25, 1],
      [8, 300, 12, 3],
      [5, 40, 3, 1], // shorter than one slice: a single slice
    ];
    for (const plan of plans) {
      forceMatmul(plan);
      try {
        for (const [m, k, n, batch] of shapes) {
          for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
            await checkMatmul(
              spec(m, k, n, ta, tb, batch),
              `${JSON.stringify(plan)} ${batch}x${m}x${k}x${n} tA=${ta} tB=${tb}`,
            );
          }
        }
      } finally {
        forceMatmul(null);
      }
    }
  },
});

Deno.test({
  name: "webgpu matmul: forced variants compile their own pipelines (variant in the cache key)",
  ignore,
  async fn() {
    const s = spec(40, 40, 40, false, false);
    const before = backend().stats.pipelines;
    for (const v of [{ variant: "blocked" as const }, { variant: "tiled" as const }]) {
      forceMatmul(v);
      try {
        await checkMatmul(s, v.variant);
      } finally {
        forceMatmul(null);
      }
    }
    await checkMatmul(s, "default");
    assert.ok(backend().stats.pipelines - before >= 2, "each variant compiles its pipeline");
  },
});

Deno.test({
  name: "webgpu hardware defaults (tiled, split-K) give the reference products on this adapter",
  ignore,
  async fn() {
    const was = isHardwareAdapter();
    setHardwareAdapter(true);
    try {
      const big = spec(512, 64, 512, false, false);
      assert.equal(defaultMatmulPlan(big).variant, "tiled");
      const dw = spec(64, 4096, 32, true, false);
      assert.ok((defaultMatmulPlan(dw).splitK ?? 1) > 1, "a small output, long k: split-K");
      assert.equal(defaultMatmulPlan(spec(4, 64, 4, false, false)).variant, "simple");
      for (const s of [dw, spec(100, 50, 70, false, true), spec(200, 1500, 48, true, true)]) {
        await checkMatmul(s, `hardware ${JSON.stringify(matmulPlan(s))}`);
      }
    } finally {
      setHardwareAdapter(was);
    }
    assert.equal(
      defaultMatmulPlan(spec(512, 64, 512, false, false)).variant,
      was ? "tiled" : "blocked",
    );
  },
});

// ------------------------------------------------------------------ reductions

/** A reduce spec of one contiguous f32 input. */
function reduceSpec(
  op: "sum" | "max" | "argmax",
  shape: number[],
  axes: number[],
  square = false,
): KernelSpec {
  const strides: number[] = [];
  let st = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = st;
    st *= shape[d];
  }
  const expr = square ? E.binary("mul", E.in(0), E.in(0)) : E.in(0);
  return { kind: "reduce", op, shape, axes, expr, inputs: [{ dtype: "f32", strides }] };
}

async function reduceBoth(
  spec: KernelSpec,
  x: Float32Array,
  nOut: number,
  parts: number,
): Promise<[ArrayBuffer, ArrayBuffer]> {
  forceReduceSplit(1);
  try {
    const one = await runSpec(spec, [x], nOut);
    forceReduceSplit(parts);
    const two = await runSpec(spec, [x], nOut);
    return [one, two];
  } finally {
    forceReduceSplit(null);
  }
}

Deno.test({
  name: "webgpu two-pass reductions (sum, max, argmax) match the one-pass kernels",
  ignore,
  async fn() {
    const cases: [number[], number[]][] = [
      [[100003], [0]],
      [[3, 40000], [1]],
      [[7, 5000, 2], [1]],
      [[2, 3000, 5], [0, 1]],
      [[64, 77], [0, 1]],
    ];
    for (const [shape, axes] of cases) {
      const total = shape.reduce((a, b) => a * b, 1);
      const nOut = shape.filter((_, d) => !axes.includes(d)).reduce((a, b) => a * b, 1);
      const x = randomData(total, total % 1000);
      for (const parts of [2, 7, 64]) {
        for (const op of ["sum", "max", "argmax"] as const) {
          const [one, two] = await reduceBoth(
            reduceSpec(op, shape, axes, op === "sum"),
            x,
            nOut,
            parts,
          );
          const what = `${op} [${shape}] axes ${axes} parts ${parts}`;
          if (op === "argmax") {
            assert.deepEqual([...new Int32Array(two)], [...new Int32Array(one)], what);
          } else if (op === "max") {
            assert.deepEqual([...new Float32Array(two)], [...new Float32Array(one)], what);
          } else {
            assertClose(new Float32Array(two), new Float32Array(one), 1e-3, 1e-4, what);
          }
        }
      }
    }
  },
});

Deno.test({
  name: "webgpu two-pass max/argmax: NaN propagates, first maximum kept, -inf only",
  ignore,
  async fn() {
    const n = 50000;
    const x = randomData(n, 5);
    x[31000] = 7;
    x[41000] = 7; // a tie in a later slice: the first index wins
    let [one, two] = await reduceBoth(reduceSpec("argmax", [n], [0]), x, 1, 8);
    assert.equal(new Int32Array(two)[0], 31000);
    assert.equal(new Int32Array(one)[0], 31000);
    x[45000] = NaN;
    [one, two] = await reduceBoth(reduceSpec("max", [n], [0]), x, 1, 8);
    assert.ok(Number.isNaN(new Float32Array(two)[0]) && Number.isNaN(new Float32Array(one)[0]));
    [, two] = await reduceBoth(reduceSpec("argmax", [n], [0]), x, 1, 8);
    assert.equal(new Int32Array(two)[0], 45000);
    const neg = new Float32Array(n).fill(-Infinity);
    [one, two] = await reduceBoth(reduceSpec("argmax", [n], [0]), neg, 1, 8);
    assert.deepEqual(new Int32Array(two), new Int32Array(one));
  },
});

Deno.test({
  name: "webgpu two-pass norm matches the one-workgroup norm, direct and gated",
  ignore,
  async fn() {
    const n = 300001;
    const x = randomData(n + 10, 9);
    let ref = 0;
    for (let i = 10; i < n + 10; i++) ref += x[i] * x[i];
    ref = Math.sqrt(ref);
    const spec: KernelSpec = { kind: "norm", start: 10, n, outIndex: 1 };
    const be = backend();
    const results: number[] = [];
    for (const parts of [1, 2, 37, 300]) {
      forceReduceSplit(parts);
      try {
        results.push(new Float32Array(await runSpec(spec, [x], 4))[1]);
        // Gated: any non-zero counts give the same value; zero counts skip the kernel.
        for (const counts of [[1, 1, 1], [5, 1, 1], [4096, 1, 1], [0, 1, 1]]) {
          const g = be.alloc(16);
          be.write(g, new Uint32Array([...counts, 0]));
          const out: Float32Array = new Float32Array(
            await runSpec(spec, [x], 4, { storage: g, offset: 0 }, new Float32Array([0, -1, 0, 0])),
          );
          be.release(g);
          if (counts[0] === 0) assert.equal(out[1], -1, "zero counts skip");
          else assert.equal(out[1], results[results.length - 1], `gated ${counts} parts ${parts}`);
        }
      } finally {
        forceReduceSplit(null);
      }
    }
    for (const r of results) assertClose([r], [ref], 1e-3, 1e-5, "norm");
  },
});

Deno.test({
  name: "webgpu hardware defaults split long reductions and norms",
  ignore,
  async fn() {
    const was = isHardwareAdapter();
    setHardwareAdapter(true);
    try {
      const n = 1 << 18;
      const x = randomData(n, 3);
      let ref = 0;
      for (const v of x) ref += v * v;
      const sum = new Float32Array(await runSpec(reduceSpec("sum", [n], [0], true), [x], 1));
      assertClose(sum, [ref], 1e-3, 1e-4, "sum");
      const norm = new Float32Array(
        await runSpec({ kind: "norm", start: 0, n, outIndex: 0 }, [x], 1),
      );
      assertClose(norm, [Math.sqrt(ref)], 1e-3, 1e-5, "norm");
    } finally {
      setHardwareAdapter(was);
    }
  },
});

// ------------------------------------------------------------------ autotuning

Deno.test({
  name: "webgpu autotune: off under deno test, so matmuls take the deterministic choice",
  ignore,
  fn() {
    if (envGet("AUTOLOSS_AUTOTUNE") !== "1") assert.equal(autotuneEnabled().on, false);
    const s = spec(300, 200, 100, false, true);
    if (!autotuneEnabled().on) assert.deepEqual(matmulPlan(s), defaultMatmulPlan(s));
  },
});

Deno.test({
  name: "webgpu autotune: an explicit tuning picks a timed candidate, used for its shape class, " +
    "cached on disk per adapter",
  ignore,
  async fn() {
    const dir = await Deno.makeTempDir();
    const file = `${dir}/webgpu-tune.json`;
    setTuneCacheFile(file);
    try {
      const s = spec(64, 96, 64, false, false);
      const candidates = [
        defaultMatmulPlan(s),
        { variant: "tiled" as const, tile: TILE_64 },
        { variant: "blocked" as const, block: SMALL_BLOCK, splitK: 2 },
      ];
      const e = await autotuneMatmul(s, { candidates, budgetMs: 20 });
      assert.equal(e.shapeClass, matmulClass(s));
      assert.equal(e.timings.length, 3);
      assert.ok(candidates.some((c) => JSON.stringify(c) === JSON.stringify(e.plan)));
      assert.ok(Number.isFinite(e.ms) && e.ms > 0, `time ${e.ms}`);
      // Same class (sizes rounded up to powers of two, same alignment): the tuned plan.
      const t = spec(60, 80, 48, false, false);
      assert.equal(matmulClass(t), matmulClass(s));
      assert.deepEqual(matmulPlan(t), e.plan);
      await checkMatmul(t, `tuned ${e.name}`);
      assert.equal(tunedMatmulChoices().entries.length, 1);
      // The cache file holds it under this adapter; a fresh process (here: cleared memory) reads it.
      const data = JSON.parse(await Deno.readTextFile(file));
      const adapters = Object.values(data.adapters) as Record<string, { plan: unknown }>[];
      assert.deepEqual(adapters[0][e.shapeClass].plan, e.plan);
      clearTuning();
      assert.deepEqual(matmulPlan(t), defaultMatmulPlan(t), "cleared: the deterministic choice");
      setAutotune(true);
      assert.deepEqual(matmulPlan(t), e.plan, "read back from the cache file");
      assert.equal(tunedMatmulChoices().entries[0].method, "cache");
    } finally {
      setAutotune(null);
      clearTuning();
      setTuneCacheFile(undefined);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
