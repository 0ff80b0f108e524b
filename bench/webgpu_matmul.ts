/**
 * WebGPU matmul throughput per kernel variant on the current adapter, side by side: the
 * deterministic default choice, the workgroup-memory tiled kernel (64x64 and the 128x64 tiles),
 * and the autotuned choice (tuned here, at each size, with `autotuneMatmul`). Prints the CPU
 * model and the adapter.
 *
 * Run: `npx -y deno@2.9.6 run -A bench/webgpu_matmul.ts [--sizes 256,512,1024,2048] [--json]`
 * (`--no-tune` skips the autotuned column; square row-major products C = A B).
 * @module
 */

import { parseArgs } from "node:util";
import { backend, init } from "../gpu/backend.ts";
import type { MatmulSpec } from "../gpu/kernel.ts";
import { adapterInfo } from "../gpu/webgpu/device.ts";
import {
  defaultMatmulPlan,
  forceMatmul,
  type MatmulPlan,
  matmulPlan,
} from "../gpu/webgpu/render.ts";
import { autotuneMatmul, describePlan } from "../gpu/webgpu/autotune.ts";
import { TILE_128x64, TILE_64 } from "../gpu/webgpu/shaders/matmul.ts";

/** One measured cell. */
export interface MatmulRow {
  /** Square size. */
  size: number;
  /** Column: default, tiled64, tiled128x64, autotuned. */
  column: string;
  /** The plan that ran. */
  plan: string;
  /** Milliseconds per product. */
  ms: number;
  /** Throughput. */
  gflops: number;
}

/** The CPU model (lscpu's "Model name"), from /proc/cpuinfo where readable. */
export function cpuModel(): string {
  try {
    const m = Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.+)$/m);
    if (m) return m[1].trim();
  } catch {
    // not Linux, or no read permission
  }
  return "unknown CPU";
}

/** Milliseconds per run of `spec` under `plan` (wall time, sync overhead subtracted). */
async function timePlan(spec: MatmulSpec, plan: MatmulPlan | null): Promise<number> {
  const be = backend();
  const n = spec.m * spec.k;
  const bufs = [n, spec.k * spec.n, spec.m * spec.n].map((len) => be.alloc(len * 4));
  const data = new Float32Array(Math.max(n, spec.k * spec.n)).map((_, i) => (i % 7) / 7 - 0.5);
  be.write(bufs[0], data.subarray(0, n));
  be.write(bufs[1], data.subarray(0, spec.k * spec.n));
  const refs = bufs.map((s, i) => ({
    storage: s,
    offset: 0,
    numel: [n, spec.k * spec.n, spec.m * spec.n][i],
  }));
  forceMatmul(plan);
  try {
    const t0 = performance.now();
    await be.sync();
    const empty = performance.now() - t0;
    const w0 = performance.now();
    be.run({ kind: "matmul", ...spec }, refs); // compiles
    await be.sync();
    const warm = Math.max(1, performance.now() - w0 - empty);
    const reps = Math.max(1, Math.min(50, Math.round(600 / warm)));
    let best = Infinity;
    for (let trial = 0; trial < 2; trial++) {
      const s0 = performance.now();
      for (let i = 0; i < reps; i++) be.run({ kind: "matmul", ...spec }, refs);
      await be.sync();
      best = Math.min(best, (performance.now() - s0 - empty) / reps);
      if (warm > 1000) break;
    }
    return best;
  } finally {
    forceMatmul(null);
    for (const s of bufs) be.release(s);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      sizes: { type: "string", default: "256,512,1024,2048" },
      json: { type: "boolean", default: false },
      "no-tune": { type: "boolean", default: false },
    },
  });
  await init({ backend: "webgpu" });
  const a = await adapterInfo();
  const sizes = values.sizes.split(",").map(Number);
  const rows: MatmulRow[] = [];
  console.log(`CPU: ${cpuModel()} (${navigator.hardwareConcurrency} threads)`);
  console.log(
    `adapter: ${a.description || a.vendor}${
      a.isFallbackAdapter ? " (software fallback)" : ""
    }, DENO_WEBGPU_BACKEND=${a.backend}, Deno ${a.deno}`,
  );
  for (const size of sizes) {
    const spec: MatmulSpec = {
      batch: 1,
      m: size,
      k: size,
      n: size,
      transA: false,
      transB: false,
      batchStrideA: 0,
      batchStrideB: 0,
    };
    const columns: [string, MatmulPlan | null][] = [
      ["default", defaultMatmulPlan(spec)],
      ["tiled64", { variant: "tiled", tile: TILE_64 }],
      ["tiled128x64", { variant: "tiled", tile: TILE_128x64 }],
    ];
    if (!values["no-tune"]) {
      const t0 = performance.now();
      const e = await autotuneMatmul(spec, { force: true });
      const s = ((performance.now() - t0) / 1000).toFixed(1);
      console.log(
        `  tuned ${size}: ${e.name} in ${s} s (${e.method}; ${
          e.timings.map((t) => `${t.name}: ${Number.isFinite(t.ms) ? t.ms.toFixed(1) : "-"}`)
            .join(", ")
        })`,
      );
      columns.push(["autotuned", matmulPlan(spec)]);
    }
    for (const [column, plan] of columns) {
      const ms = await timePlan(spec, plan);
      const gflops = (2 * size ** 3) / ms / 1e6;
      rows.push({ size, column, plan: describePlan(plan!), ms, gflops });
    }
  }
  if (values.json) {
    console.log(JSON.stringify({ cpu: cpuModel(), adapter: a.description, rows }, null, 1));
  } else {
    const cols = [...new Set(rows.map((r) => r.column))];
    console.log(`\nGFLOP/s   ${cols.map((c) => c.padStart(12)).join("")}`);
    for (const size of sizes) {
      const cells = cols.map((c) => {
        const r = rows.find((x) => x.size === size && x.column === c);
        return (r ? r.gflops.toFixed(2) : "-").padStart(12);
      });
      console.log(`${String(size).padEnd(10)}${cells.join("")}`);
    }
    console.log("\nplans:");
    for (const r of rows) {
      console.log(`  ${r.size} ${r.column}: ${r.plan} (${r.ms.toFixed(1)} ms)`);
    }
  }
}
