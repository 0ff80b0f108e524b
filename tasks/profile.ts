/**
 * What `cli.ts profile <task>` runs: one training step of each task at the sizes of its resolved
 * config (preset, `--config`, `--set`), with every step's features computed as a controller
 * would read them:
 *
 * - gan: a GanTask step, alternating D and G updates (host actions), IS evaluation off;
 * - regression / mlp: a population step of `controller.population` members, each member taking
 *   the task or the L1 action in turn;
 * - nmt: one MT training step of the task's encoder-decoder (Adam, global-norm clip) on a
 *   synthetic batch of `train.batch` sentence pairs of 20 tokens over vocabularies of 5000 (the
 *   corpus itself is not needed).
 * @module
 */

import { init } from "../gpu/backend.ts";
import { FlatParams } from "../nn/module.ts";
import { Adam, clipGradNorm } from "../nn/optim.ts";
import type { ProfileWorkload } from "../run/profile.ts";
import { resolveTaskConfig } from "../run/session.ts";
import type { ScheduleTask } from "../rl/task.ts";
import { type Tensor, tidy } from "../tensor/tensor.ts";
import { GAN_SCHEMA } from "./gan/config.ts";
import { D_ACTION, G_ACTION } from "./gan/task.ts";
import { loadContext, makeTask } from "./gan/run.ts";
import { MLP_SPEC, REGRESSION_SPEC, type TaskSpec } from "./l1/run.ts";
import type { SharedConfig } from "./l1/config.ts";
import { NMT_SCHEMA } from "./nmt/commands.ts";
import { disposeBatch, makeBatch, Seq2Seq, type Seq2SeqSizes } from "./nmt/model.ts";
import type { CommonOptions } from "./registry.ts";

/** A workload stepping a {@link ScheduleTask} through host actions, reading features each step. */
function taskWorkload(
  task: ScheduleTask,
  actions: Int32Array[],
  description: string,
  extra: () => void = () => {},
): ProfileWorkload {
  let last: Tensor | null = null;
  return {
    description,
    step(i) {
      task.step(actions[i % actions.length]);
      // The runner reads the features after every step; they are part of the step's cost.
      last = task.features();
    },
    dispose() {
      void last;
      task.dispose();
      extra();
    },
  };
}

/** The GAN step of the resolved config. */
export async function ganWorkload(opts: CommonOptions): Promise<ProfileWorkload> {
  const cfg = await resolveTaskConfig(opts, GAN_SCHEMA, "gan");
  await init();
  const ctx = await loadContext({ ...cfg, is: { ...cfg.is, realSamples: 0 } }, () => {});
  const task = makeTask(cfg, ctx, { isEvery: 0 });
  task.reset(cfg.seed);
  const a = cfg.model;
  return taskWorkload(
    task,
    [new Int32Array([D_ACTION]), new Int32Array([G_ACTION])],
    `gan step (${opts.preset}): DCGAN G${a.gFilters} D${a.dFilters} z${a.zDim}, batch ${cfg.optim.batchSize}, ` +
      "D and G updates alternating, features every step",
    () => ctx.classifier?.dispose(),
  );
}

/** The population step of an L1 task (regression or mlp). */
async function l1Workload<C extends SharedConfig>(
  spec: TaskSpec<C>,
  opts: CommonOptions,
): Promise<ProfileWorkload> {
  const cfg = await resolveTaskConfig(opts, spec.schema, spec.name) as unknown as C;
  await init();
  const problem = spec.problem(cfg);
  const p = cfg.controller.population;
  const task = problem.create({
    population: p,
    lambda: 0,
    mode: "schedule",
    data: "task",
    steps: 1000,
  });
  task.reset(cfg.seed);
  const mixed = Int32Array.from({ length: p }, (_, i) => i % 2);
  const flipped = mixed.map((v) => 1 - v);
  return taskWorkload(
    task,
    [mixed, flipped],
    `${spec.name} step (${opts.preset}): a population of ${p} members, task and L1 actions mixed, ` +
      "features every step",
  );
}

/** Options of {@link syntheticMtStep}. */
export interface MtStepShape {
  /** Sentence pairs per batch. */
  batch: number;
  /** Source and target length. */
  length: number;
  /** Source and target vocabulary size. */
  vocab: number;
  /** The model (embedding, hidden sizes, layers). */
  model: Pick<
    Seq2SeqSizes,
    "emb" | "hidden" | "encoderLayers" | "decoderHidden" | "decoderLayers"
  >;
}

/** Deterministic token ids in [4, vocab). */
function ids(n: number, vocab: number, seed: number): number[] {
  let a = seed >>> 0;
  return Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return 4 + (a % (vocab - 4));
  });
}

/**
 * One MT training step of the nmt encoder-decoder on a fixed synthetic batch: forward, token
 * cross-entropy, backward, global-norm clip 1, Adam (lr 1e-3); dropout off. `loss()` is the last
 * step's loss tensor (owned by the workload).
 */
export function syntheticMtStep(s: MtStepShape): ProfileWorkload & { loss(): Tensor } {
  const model = new Seq2Seq({
    srcVocab: s.vocab,
    decoders: { mt: s.vocab },
    ...s.model,
    dropout: 0,
  }, 1);
  const flat = new FlatParams(model.namedParameters(), model.paramGroups());
  const opt = new Adam(flat, { lr: 1e-3 });
  const src = Array.from({ length: s.batch }, (_, r) => ids(s.length, s.vocab, r + 1));
  // Target of length - 1 so that BOS + target (and target + EOS) are `length` long.
  const tgt = Array.from({ length: s.batch }, (_, r) => ids(s.length - 1, s.vocab, r + 1001));
  const batch = makeBatch(src, tgt);
  let last = tidy(() => model.loss("mt", batch).reshape([1]));
  const m = s.model;
  return {
    description: `nmt MT step: batch ${s.batch}, length ${s.length}, vocabularies ${s.vocab}, ` +
      `E${m.emb} H${m.hidden} x${m.encoderLayers} (bidirectional) / H${m.decoderHidden} x${m.decoderLayers}`,
    step() {
      last.dispose();
      last = tidy(() => {
        flat.zeroGrad();
        const loss = model.loss("mt", batch);
        loss.backward();
        clipGradNorm(flat, 1);
        opt.step("all");
        return loss.detach().reshape([1]);
      });
    },
    loss: () => last,
    dispose() {
      last.dispose();
      disposeBatch(batch);
      opt.dispose();
      flat.dispose();
    },
  };
}

/** The NMT step at the resolved config's model and batch sizes. */
export async function nmtWorkload(opts: CommonOptions): Promise<ProfileWorkload> {
  const cfg = await resolveTaskConfig(opts, NMT_SCHEMA, "nmt");
  await init();
  return syntheticMtStep({ batch: cfg.train.batch, length: 20, vocab: 5000, model: cfg.model });
}

/** The profile workload of each task. */
export const PROFILE_WORKLOADS: Record<string, (opts: CommonOptions) => Promise<ProfileWorkload>> =
  {
    gan: ganWorkload,
    nmt: nmtWorkload,
    regression: (o) => l1Workload(REGRESSION_SPEC, o),
    mlp: (o) => l1Workload(MLP_SPEC, o),
  };
