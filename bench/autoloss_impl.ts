/**
 * The autoloss side of the peer benchmarks: the same workloads as bench/tfjs_peer.ts, written with
 * this library's public API, for bench/report.ts and bench/peer_tfjs.bench.ts.
 * @module
 */

import { backend, init } from "../gpu/backend.ts";
import { manualSeed } from "../tensor/ops.ts";
import { rand, randn } from "../tensor/functional.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Implementation, Workload, WorkloadParams } from "./report.ts";
import { mlpWorkload } from "./mlp_step.ts";

/** A workload whose step makes one tensor; the previous result is freed as the next is made. */
function oneOutput(inputs: Tensor[], op: () => Tensor): Workload {
  let last: Tensor | null = null;
  return {
    step() {
      const out = op();
      last?.dispose();
      last = out;
    },
    sync: () => backend().sync(),
    dispose() {
      last?.dispose();
      for (const t of inputs) t.dispose();
    },
  };
}

/** autoloss as a benchmark contender. */
export const autolossImplementation: Implementation = {
  name: "autoloss",
  async init() {
    await init();
    manualSeed(1);
  },
  create(p: WorkloadParams): Workload {
    switch (p.kind) {
      case "matmul": {
        const a = randn([p.m, p.k]);
        const b = randn([p.k, p.n]);
        return oneOutput([a, b], () => a.matmul(b));
      }
      case "elementwise": {
        const a = rand([p.size]);
        const b = rand([p.size]);
        const op = p.op === "add"
          ? () => a.add(b)
          : p.op === "mul"
          ? () => a.mul(b)
          : () => a.exp();
        return oneOutput([a, b], op);
      }
      case "reduce": {
        const a = rand([p.rows, p.cols]);
        return oneOutput([a], () => a.sum(p.axis));
      }
      case "mlp":
        return mlpWorkload(p);
    }
  },
  memory() {
    const s = backend().stats;
    return { tensors: s.liveStorages, bytes: s.liveBytes };
  },
};
