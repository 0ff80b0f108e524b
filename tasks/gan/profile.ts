/**
 * The `profile gan` workload: a GanTask step at the resolved config's sizes, alternating D and G
 * updates (host actions), IS evaluation off, features every step.
 * @module
 */

import { init } from "../../gpu/backend.ts";
import type { ProfileWorkload } from "../../run/profile.ts";
import { resolveTaskConfig } from "../../run/session.ts";
import { taskWorkload } from "../profile.ts";
import type { CommonOptions } from "../registry.ts";
import { GAN_SCHEMA } from "./config.ts";
import { D_ACTION, G_ACTION } from "./actions.ts";
import { loadContext, makeTask } from "./run.ts";

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
