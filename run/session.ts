/**
 * The start of every task command, in one place so every task behaves the same: resolve the
 * config (schema defaults <- `configs/<task>/<preset>.yaml` <- `--config` files <- `--set`
 * overrides <- `--seed`), create the run directory (or reopen it for `--resume`), save the
 * resolved config, and acquire the GPU.
 * @module
 */

import { parse } from "npm:yaml@2.9.1";
import { type Backend, init } from "../gpu/backend.ts";
import {
  ConfigError,
  type ConfigOf,
  type Layer,
  loadYamlFile,
  parseSet,
  resolveConfig,
  type Schema,
} from "./config.ts";
import { RunDir } from "./run_dir.ts";

/**
 * The command-line options a session reads (the task registry's `CommonOptions` extends this, so
 * run/ needs nothing from tasks/).
 */
export interface SessionOptions {
  /** The task name. */
  task: string;
  /** Config preset: "quick" (minutes) or "paper" (the paper's scale). */
  preset: "quick" | "paper";
  /** `--config` YAML files, in order (each layered over the preset). */
  config: string[];
  /** `--set key=value` overrides, in order. */
  set: string[];
  /** `--out DIR`: the run directory to create. */
  out?: string;
  /** `--resume RUNDIR`: the run directory to continue. */
  resume?: string;
  /** `--seed N`. */
  seed?: number;
}

/** What a task command works with. */
export interface Session<S extends Schema> {
  /** The resolved, validated config. */
  cfg: ConfigOf<S>;
  /** The run directory (config.yaml already written). */
  dir: RunDir;
  /** True when continuing a run given by `--resume`. */
  resumed: boolean;
}

/** The URL of a preset file shipped with autoloss: `configs/<task>/<preset>.yaml`. */
export function presetUrl(task: string, preset: string): URL {
  return new URL(`../configs/${task}/${preset}.yaml`, import.meta.url);
}

/** Reads a shipped preset (works when autoloss is imported from a URL, too). */
export async function loadPreset(task: string, preset: string): Promise<Layer> {
  const url = presetUrl(task, preset);
  let text: string;
  try {
    text = url.protocol === "file:" ? await Deno.readTextFile(url) : await fetch(url).then((r) => {
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return r.text();
    });
  } catch (err) {
    throw new ConfigError(
      `no preset '${preset}' for task '${task}' (${url.href}: ${(err as Error).message}); ` +
        "presets are quick and paper",
    );
  }
  return { source: `configs/${task}/${preset}.yaml`, values: parse(text) };
}

/**
 * Resolves a task's config from its preset, `--config` files, `--set` overrides and `--seed`
 * (in that order), without opening a run directory.
 */
export async function resolveTaskConfig<S extends Schema>(
  opts: Pick<SessionOptions, "preset" | "config" | "set" | "seed">,
  schema: S,
  task: string,
): Promise<ConfigOf<S>> {
  const layers: Layer[] = [await loadPreset(task, opts.preset)];
  for (const path of opts.config) layers.push(await loadYamlFile(path));
  for (const expr of opts.set) layers.push(parseSet(expr));
  if (opts.seed !== undefined) {
    if (!("seed" in schema)) throw new ConfigError(`task '${task}' has no seed setting`);
    layers.push({ source: "--seed", values: { seed: opts.seed } });
  }
  return resolveConfig(schema, layers);
}

/**
 * Reopens the run directory of `--resume DIR` with its saved config.yaml (validated against the
 * schema): the one resume rule of every command. A resumed run continues exactly the run it was,
 * so `--config`, `--set` and `--seed` are refused with the fix.
 */
export async function reopenRun<S extends Schema>(
  opts: Pick<SessionOptions, "resume" | "config" | "set" | "seed">,
  schema: S,
): Promise<{ cfg: ConfigOf<S>; dir: RunDir }> {
  if (!opts.resume) throw new ConfigError("reopenRun: no --resume directory given");
  if (opts.config.length || opts.set.length || opts.seed !== undefined) {
    throw new ConfigError(
      "--resume continues a run with its saved config.yaml; drop --config/--set/--seed " +
        "(or start a new run)",
    );
  }
  const dir = await RunDir.open(opts.resume);
  const cfg = resolveConfig(schema, [await loadYamlFile(dir.file("config.yaml"))]);
  return { cfg, dir };
}

/**
 * Resolves the config and opens the run directory for a task command.
 *
 * With `--resume DIR`, {@link reopenRun}'s rule: the config comes from `DIR/config.yaml` and
 * `--config`/`--set`/`--seed` are refused. The schema must have a top-level `seed` field when
 * `--seed` is used. A new run directory is `runs/<dirName>-<stamp>` unless `--out` names one
 * (`dirName`: the task, or e.g. `regression-compare`).
 */
export async function openSession<S extends Schema>(
  opts: SessionOptions,
  schema: S,
  task: string = opts.task,
  dirName: string = task,
): Promise<Session<S>> {
  if (opts.resume) {
    const { cfg, dir } = await reopenRun(opts, schema);
    await recordBackend(dir, await init());
    return { cfg, dir, resumed: true };
  }
  const cfg = await resolveTaskConfig(opts, schema, task);
  const be = await init();
  const dir = await RunDir.create({ task: dirName, out: opts.out });
  await dir.writeConfig(cfg);
  await recordBackend(dir, be);
  return { cfg, dir, resumed: false };
}

/**
 * Says which backend runs and why, on stderr and in the run directory's `backend.json` (a resumed
 * run rewrites it, and says so when the backend differs from the one the run started on).
 */
export async function recordBackend(dir: RunDir, be: Backend): Promise<void> {
  console.error(`backend: ${be.info.kind} (${be.info.reason}); ${be.info.device}`);
  const before = await Deno.readTextFile(dir.file("backend.json")).then(
    (t) => JSON.parse(t) as { kind?: string },
    () => null,
  );
  if (before?.kind && before.kind !== be.info.kind) {
    console.error(
      `note: this run started on the ${before.kind} backend and continues on ${be.info.kind}: ` +
        `the results will differ from an uninterrupted run in the last bits (use --backend ` +
        `${before.kind} to continue on the same one)`,
    );
  }
  await dir.writeFile(
    "backend.json",
    JSON.stringify({ ...be.info, deno: Deno.version.deno, at: new Date().toISOString() }, null, 2) +
      "\n",
  );
}
