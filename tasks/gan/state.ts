/**
 * The GAN task's per-step GPU state vector (its layout) and the plain part of a task checkpoint,
 * with the reader of the earlier checkpoint layout (five named state entries).
 * @module
 */

import type { Checkpoint, CheckpointTensor } from "../../nn/checkpoint.ts";
import type { BatchIteratorState } from "../../nn/data/batches.ts";

/** Plain (JSON) part of a task checkpoint. */
export interface GanTaskMeta {
  /** Steps taken. */
  t: number;
  /** IS evaluations so far. */
  isCount: number;
  /** Data iterator position. */
  iterator: BatchIteratorState;
  /** The seed the task was reset with. */
  seed: number;
}

/**
 * The per-step GPU state, one [16] vector (rewritten by one kernel each step): element ranges of
 * the latest losses (gen_cost, d_real, d_fake, acc_real, acc_fake), their EMAs (the first
 * three), the lazy gradient norms and per-action losses ([G, D] each) and the flags (run, last,
 * g_count, nonfinite).
 */
export const STATE = { losses: 0, ema: 5, grads: 8, lazyLoss: 10, flags: 12, size: 16 } as const;
/** The named ranges of {@link STATE} and their lengths (the checkpoint layout before one vector). */
export const STATE_PARTS: readonly [keyof typeof STATE, number][] = [
  ["losses", 5],
  ["ema", 3],
  ["grads", 2],
  ["lazyLoss", 2],
  ["flags", 4],
];

/**
 * The state vector of a checkpoint written before the state was one vector (separate
 * `state.losses`, `state.ema`, `state.grads`, `state.lazyLoss`, `state.flags` entries), or
 * undefined when any is missing.
 */
export function legacyStateVector(ckpt: Checkpoint, prefix: string): CheckpointTensor | undefined {
  const data = new Float32Array(STATE.size);
  for (const [name, n] of STATE_PARTS) {
    const src = ckpt.tensors.get(`${prefix}state.${name}`);
    if (!src || src.data.length !== n) return undefined;
    data.set(src.data, STATE[name]);
  }
  return { dtype: "F32", shape: [STATE.size], data };
}
