/**
 * The autoloss MLP training step used by the peer benchmark: batch 128, 100 -> 64 (ReLU) -> 1,
 * MSE, Adam over one flat parameter buffer. One step records ~30 dispatches and never waits.
 * @module
 */

import { backend } from "../gpu/backend.ts";
import { Linear, ReLU, Sequential } from "../nn/layers.ts";
import { mse } from "../nn/losses.ts";
import { FlatParams } from "../nn/module.ts";
import { Adam } from "../nn/optim.ts";
import { randn } from "../tensor/functional.ts";
import { tidy } from "../tensor/tensor.ts";
import type { Workload, WorkloadParams } from "./workload.ts";

/** Builds the MLP-step workload for `p` (kind "mlp"). */
export function mlpWorkload(p: Extract<WorkloadParams, { kind: "mlp" }>): Workload {
  const model = new Sequential(
    new Linear(p.inDim, p.hidden),
    new ReLU(),
    new Linear(p.hidden, p.outDim),
  );
  const flat = new FlatParams(model.namedParameters());
  const opt = new Adam(flat, { lr: p.lr });
  const x = randn([p.batch, p.inDim]);
  const y = randn([p.batch, p.outDim]);
  return {
    step() {
      tidy(() => {
        flat.zeroGrad();
        mse(model.forward(x), y).backward();
        opt.step();
      });
    },
    sync: () => backend().sync(),
    dispose() {
      x.dispose();
      y.dispose();
      flat.dispose();
    },
  };
}
