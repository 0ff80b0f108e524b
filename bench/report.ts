/**
 * Benchmark harness and report: the workload table shared with `bench/peer_tfjs.bench.ts`, the
 * `Implementation` interface each contender implements, and a plain script that times every
 * workload for every implementation and prints a markdown table.
 *
 * Run: `npx -y deno@2.9.6 run -A --no-lock bench/report.ts [--filter=REGEX] [--iters=5] [--warmup=2]
 * [--quick] [--json]`. Progress goes to stderr, the table (or JSON) to stdout.
 *
 * Timing model: one *iteration* runs R operations (`step()` R times, nothing awaited between them)
 * and then waits once for the GPU (`sync()`). The time per operation is iteration time / R, so the
 * fixed ~11 ms cost of one wait on Deno (every `mapAsync` / `onSubmittedWorkDone` round trip sleeps
 * ~10 ms; see `bench/probe.ts`) is spread over R operations instead of dominating small ops. R is
 * set per workload in {@linkcode WORKLOADS} so that an iteration is roughly 50-500 ms of GPU work
 * on llvmpipe; the report also prints each implementation's empty-sync time so the residual share
 * can be judged.
 *
 * To add an implementation (e.g. autoloss): write an object satisfying {@linkcode Implementation}
 * and append it to {@linkcode IMPLEMENTATIONS}. The report then prints its column and a ratio
 * column against the baseline (the first implementation, TF.js), and `deno bench` prints the ratio
 * within each group.
 * @module
 */

import { tfjsImplementation } from "./tfjs_peer.ts";
import { autolossImplementation } from "./autoloss_impl.ts";

export type { Implementation, Workload, WorkloadParams, WorkloadSpec } from "./workload.ts";
import type { Implementation, Workload, WorkloadParams, WorkloadSpec } from "./workload.ts";

/** The implementations compared; the first one is the baseline for ratios. */
export const IMPLEMENTATIONS: Implementation[] = [tfjsImplementation, autolossImplementation];

const MLP: WorkloadParams = {
  kind: "mlp",
  batch: 128,
  inDim: 100,
  hidden: 64,
  outDim: 1,
  lr: 1e-3,
};

/** The benchmark workloads with their R (ops per GPU wait). */
export const WORKLOADS: WorkloadSpec[] = [
  ...([[64, 100, 5], [128, 100, 5], [256, 20, 5], [512, 4, 3], [1024, 1, 2]] as const).map((
    [s, reps, benchN],
  ): WorkloadSpec => ({
    id: `matmul ${s}`,
    group: `matmul ${s}x${s}x${s}`,
    params: { kind: "matmul", m: s, k: s, n: s },
    reps,
    benchN,
  })),
  {
    id: "skinny 4096x64x64",
    group: "matmul 4096x64x64",
    params: { kind: "matmul", m: 4096, k: 64, n: 64 },
    reps: 20,
    benchN: 5,
  },
  {
    id: "skinny 128x100x64",
    group: "matmul 128x100x64",
    params: { kind: "matmul", m: 128, k: 100, n: 64 },
    reps: 50,
    benchN: 5,
  },
  ...(["add", "mul", "exp"] as const).map((op): WorkloadSpec => ({
    id: `elementwise ${op} 1M`,
    group: `elementwise ${op} 1M`,
    params: { kind: "elementwise", op, size: 1 << 20 },
    reps: 50,
    benchN: 5,
  })),
  {
    id: "reduce sum rows 1024x1024",
    group: "reduce sum rows 1024x1024",
    params: { kind: "reduce", op: "sum", axis: 1, rows: 1024, cols: 1024 },
    reps: 30,
    benchN: 5,
  },
  {
    id: "reduce sum cols 1024x1024",
    group: "reduce sum cols 1024x1024",
    params: { kind: "reduce", op: "sum", axis: 0, rows: 1024, cols: 1024 },
    reps: 10,
    benchN: 5,
  },
  {
    id: "mlp step 128x100-64-1",
    group: "mlp step 128x100-64-1 adam",
    params: MLP,
    reps: 20,
    benchN: 5,
  },
];

/** Runs one iteration: R `step()`s, then one `sync()`. */
export async function runBatch(w: Workload, reps: number): Promise<void> {
  for (let i = 0; i < reps; i++) {
    const p = w.step();
    if (p) await p;
  }
  await w.sync();
}

/** Work per operation and its unit: FLOPs for matmul, bytes for elementwise/reduce, 1 step. */
export function workPerOp(p: WorkloadParams): { amount: number; unit: string } {
  switch (p.kind) {
    case "matmul":
      return { amount: 2 * p.m * p.k * p.n / 1e9, unit: "GFLOP/s" };
    case "elementwise":
      return { amount: (p.op === "exp" ? 8 : 12) * p.size / 1e9, unit: "GB/s" };
    case "reduce":
      return {
        amount: 4 * (p.rows * p.cols + (p.axis === 0 ? p.cols : p.rows)) / 1e9,
        unit: "GB/s",
      };
    case "mlp":
      return { amount: 1, unit: "steps/s" };
  }
}

/** The measurement of one workload on one implementation. */
export interface Measurement {
  /** Implementation name. */
  impl: string;
  /** Workload id. */
  id: string;
  /** R used. */
  reps: number;
  /** Median milliseconds per operation (iteration time / R). */
  msPerOp: number;
  /** Fastest iteration's milliseconds per operation. */
  msPerOpMin: number;
  /** Throughput in `unit` (from the median). */
  throughput: number;
  /** "GFLOP/s", "GB/s" or "steps/s". */
  unit: string;
  /** Median time of an empty `sync()` on this workload, ms. */
  syncMs: number;
  /** Live tensors after the timed iterations minus before (0 when memory is flat). */
  tensorDelta: number | null;
}

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Times one workload on several implementations with `performance.now()`: each gets `warmup`
 * untimed iterations, then the `iters` timed iterations are interleaved (impl A, impl B, A, B, ...)
 * so that drifting machine load (e.g. other processes on a shared 2-core box) biases no
 * implementation's ratio. Each iteration is {@linkcode runBatch}; workloads are disposed after.
 */
export async function measure(
  impls: Implementation[],
  spec: WorkloadSpec,
  opts: { warmup?: number; iters?: number } = {},
): Promise<Measurement[]> {
  const ws: Workload[] = [];
  try {
    for (const impl of impls) ws.push(await impl.create(spec.params));
    const syncs: number[][] = impls.map(() => []);
    for (const [j, w] of ws.entries()) {
      for (let i = 0; i < (opts.warmup ?? 2); i++) await runBatch(w, spec.reps);
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        await w.sync();
        syncs[j].push(performance.now() - t0);
      }
    }
    const before = impls.map((impl) => impl.memory?.().tensors);
    const times: number[][] = impls.map(() => []);
    for (let i = 0; i < (opts.iters ?? 5); i++) {
      for (const [j, w] of ws.entries()) {
        const t0 = performance.now();
        await runBatch(w, spec.reps);
        times[j].push(performance.now() - t0);
      }
    }
    const { amount, unit } = workPerOp(spec.params);
    return impls.map((impl, j) => {
      const after = impl.memory?.().tensors;
      const msPerOp = median(times[j]) / spec.reps;
      return {
        impl: impl.name,
        id: spec.id,
        reps: spec.reps,
        msPerOp,
        msPerOpMin: Math.min(...times[j]) / spec.reps,
        throughput: amount / (msPerOp / 1000),
        unit,
        syncMs: median(syncs[j]),
        tensorDelta: before[j] === undefined || after === undefined ? null : after - before[j]!,
      };
    });
  } finally {
    for (const w of ws) w.dispose();
  }
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return "-";
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(3);
}

/**
 * Renders measurements as a markdown table: one row per workload, per implementation its ms/op
 * and throughput, and for every implementation after the first a ratio column
 * (its throughput / the baseline's; > 1 means faster than the baseline).
 */
export function renderTable(
  specs: WorkloadSpec[],
  implNames: string[],
  results: Measurement[],
): string {
  const head = ["workload", "R"];
  for (const n of implNames) head.push(`${n} ms/op`, `${n} throughput`);
  for (const n of implNames.slice(1)) head.push(`${n}/${implNames[0]}`);
  const lines = [
    `| ${head.join(" | ")} |`,
    `| ${head.map((_, i) => i < 1 ? "---" : "---:").join(" | ")} |`,
  ];
  for (const s of specs) {
    const row = [s.id, String(s.reps)];
    const byImpl = implNames.map((n) => results.find((r) => r.impl === n && r.id === s.id));
    for (const m of byImpl) {
      row.push(m ? fmt(m.msPerOp) : "-", m ? `${fmt(m.throughput)} ${m.unit}` : "-");
    }
    const base = byImpl[0];
    for (const m of byImpl.slice(1)) {
      row.push(base && m ? `${(m.throughput / base.throughput).toFixed(2)}x` : "-");
    }
    lines.push(`| ${row.join(" | ")} |`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const args = Deno.args;
  const filterArg = args.find((a) => a.startsWith("--filter="));
  const filter = filterArg ? new RegExp(filterArg.slice("--filter=".length)) : null;
  const quick = args.includes("--quick");
  const specs = WORKLOADS.filter((s) => !filter || filter.test(s.id));
  const num = (name: string, dflt: number) => {
    const a = args.find((x) => x.startsWith(`--${name}=`));
    return a ? Number(a.slice(name.length + 3)) : dflt;
  };
  const opts = quick
    ? { warmup: 1, iters: 2 }
    : { warmup: num("warmup", 2), iters: num("iters", 5) };
  const loadBefore = Deno.loadavg();
  for (const impl of IMPLEMENTATIONS) await impl.init();
  const results: Measurement[] = [];
  for (const spec of specs) {
    for (const m of await measure(IMPLEMENTATIONS, spec, opts)) {
      results.push(m);
      console.error(
        `${m.impl} ${spec.id}: ${fmt(m.msPerOp)} ms/op (best ${fmt(m.msPerOpMin)}), ` +
          `${fmt(m.throughput)} ${m.unit} (R=${m.reps}, empty sync ${fmt(m.syncMs)} ms, ` +
          `tensor delta ${m.tensorDelta})`,
      );
    }
  }
  const loadAfter = Deno.loadavg();
  if (args.includes("--json")) {
    console.log(
      JSON.stringify({ deno: Deno.version.deno, opts, loadBefore, loadAfter, results }, null, 2),
    );
  } else {
    let adapter = "?";
    try {
      const a = await navigator.gpu.requestAdapter();
      adapter = a?.info.description || a?.info.vendor || "?";
    } catch {
      // keep "?"
    }
    console.log(
      `\nDeno ${Deno.version.deno}, adapter: ${adapter}, ${navigator.hardwareConcurrency} CPUs, ` +
        `load average ${loadBefore[0].toFixed(2)} before / ${loadAfter[0].toFixed(2)} after; ` +
        `median of ${opts.iters} iterations after ${opts.warmup} warmup\n`,
    );
    console.log(renderTable(specs, IMPLEMENTATIONS.map((i) => i.name), results));
    for (const impl of IMPLEMENTATIONS) {
      const s = results.filter((r) => r.impl === impl.name).map((r) => r.syncMs);
      const leaks = results.filter((r) => r.impl === impl.name && (r.tensorDelta ?? 0) !== 0);
      console.log(
        `\n${impl.name}: median empty sync ${fmt(median(s))} ms` +
          (leaks.length ? `; tensor count grew in: ${leaks.map((r) => r.id).join(", ")}` : ""),
      );
    }
  }
}
