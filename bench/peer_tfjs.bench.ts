/**
 * `deno bench` entries for every implementation in `IMPLEMENTATIONS` (bench/report.ts) over every
 * workload in `WORKLOADS`. Today that is TF.js's WebGPU backend alone; once autoloss is appended to
 * `IMPLEMENTATIONS`, each group gets an "autoloss ..." entry next to the "tfjs ..." one and
 * `deno bench` prints autoloss's speed relative to the TF.js baseline.
 *
 * Run: `npx -y deno@2.9.6 bench -A --no-lock bench/peer_tfjs.bench.ts [--filter matmul]`.
 *
 * One bench iteration = R operations then one GPU wait (see bench/report.ts), so the reported
 * time is per R ops; R is in each bench name. Workloads are created lazily on their first
 * iteration (deno's warmup absorbs pipeline compilation and uploads) and the previous bench's
 * workload is disposed when the next one starts, so only one is alive at a time.
 * @module
 */

import {
  type Implementation,
  IMPLEMENTATIONS,
  runBatch,
  type Workload,
  WORKLOADS,
} from "./report.ts";

/** The implementation every group compares against. */
const BASELINE = "tfjs";

for (const impl of IMPLEMENTATIONS) await impl.init();

let current: { impl: Implementation; id: string; w: Workload } | null = null;

async function workloadFor(impl: Implementation, spec: (typeof WORKLOADS)[number]) {
  if (current?.impl !== impl || current.id !== spec.id) {
    current?.w.dispose();
    current = null;
    current = { impl, id: spec.id, w: await impl.create(spec.params) };
  }
  return current.w;
}

for (const spec of WORKLOADS) {
  for (const impl of IMPLEMENTATIONS) {
    Deno.bench({
      name: `${impl.name} ${spec.id} (R=${spec.reps})`,
      group: spec.group,
      baseline: impl.name === BASELINE,
      n: spec.benchN,
      warmup: 1,
      async fn() {
        await runBatch(await workloadFor(impl, spec), spec.reps);
      },
    });
  }
}
