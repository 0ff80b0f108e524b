/**
 * Checks that the layers import only downward (docs/architecture.md):
 *
 *   util -> gpu -> tensor -> nn -> rl -> run -> tasks -> dist -> cli.ts, mod.ts
 *
 * A file may import its own layer and the layers below it. Inside tasks/, a task folder
 * (tasks/<name>/) may import its own folder and the shared files of tasks/ (registry.ts,
 * profile.ts), plus the cross-task imports listed in {@link TASK_EDGES}; only tasks/mod.ts and
 * tasks/lib.ts import the folders. tests/, bench/, examples/, weights/ and tools/ use the library
 * and may import anything.
 *
 * Run: `deno run --allow-read tools/check_layers.ts` (prints each violation, exits 1 if any);
 * tests/layers.test.ts runs it in the test suite.
 * @module
 */

import { dirname, join, normalize, relative } from "node:path";

/** The layers, bottom first; root files (cli.ts, mod.ts) are above them all. */
export const LAYERS: readonly string[] = [
  "util",
  "gpu",
  "tensor",
  "nn",
  "rl",
  "run",
  "tasks",
  "dist",
];

/** Folders that only use the library: they may import anything. */
const CONSUMERS = new Set(["tests", "bench", "examples", "weights", "tools"]);

/** Shared files of tasks/ that the task folders may import. */
const TASKS_SHARED = new Set(["tasks/registry.ts", "tasks/profile.ts"]);

/** Imports between task folders: the GAN is scored by the classifier task's network. */
export const TASK_EDGES: readonly (readonly [string, string])[] = [["gan", "classifier"]];

/**
 * Upward imports kept on purpose, each with its reason (from file, to file).
 * `train regression|mlp|gan` and `compare regression|mlp|gan|nmt` with `--workers` load dist/ by
 * a computed specifier so that a run without workers never loads the NATS client; the literal
 * path appears only in a `typeof import(...)`.
 */
export const ALLOWED: readonly (readonly [string, string])[] = [
  ["tasks/l1/compare.ts", "dist/learner.ts"],
  ["tasks/gan/experiments.ts", "dist/learner.ts"],
  ["tasks/nmt/commands.ts", "dist/learner.ts"],
];

/** One import that breaks the rules. */
export interface Violation {
  /** The importing file, relative to the root. */
  from: string;
  /** The imported file, relative to the root. */
  to: string;
  /** Why it is not allowed. */
  reason: string;
}

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}\/[^"']+)["']/g;

function layerOf(path: string): number {
  const top = path.split("/")[0];
  if (!path.includes("/")) return LAYERS.length; // cli.ts, mod.ts
  const i = LAYERS.indexOf(top);
  return i;
}

/** The task folder of a path under tasks/ (null for the shared files at tasks/ itself). */
function taskFolder(path: string): string | null {
  const parts = path.split("/");
  if (parts[0] !== "tasks" || parts.length < 3) return null;
  return parts[1];
}

function checkEdge(from: string, to: string): string | null {
  if (ALLOWED.some(([f, t]) => f === from && t === to)) return null;
  const top = from.split("/")[0];
  if (CONSUMERS.has(top)) return null;
  const a = layerOf(from);
  const b = layerOf(to);
  if (a < 0) return `${top}/ is not a known layer (add it to LAYERS or CONSUMERS)`;
  if (b < 0) return null; // configs, weights: data, not code
  if (b > a) return `upward import: ${LAYERS[a] ?? from} imports ${LAYERS[b] ?? to}`;
  if (a === b && LAYERS[a] === "tasks") {
    const fa = taskFolder(from);
    const fb = taskFolder(to);
    if (fa !== null && fb === null && !TASKS_SHARED.has(to)) {
      return `a task folder imports ${to} (only ${[...TASKS_SHARED].join(", ")} are shared)`;
    }
    if (fa !== null && fb !== null && fa !== fb) {
      if (!TASK_EDGES.some(([x, y]) => x === fa && y === fb)) {
        return `task folder ${fa}/ imports task folder ${fb}/`;
      }
    }
  }
  return null;
}

async function* sources(root: string, dir = root): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith(".") || e.name === "node_modules" || e.name === "runs") continue;
    const p = join(dir, e.name);
    if (e.isDirectory) yield* sources(root, p);
    else if (e.isFile && e.name.endsWith(".ts")) yield relative(root, p);
  }
}

/** Every import under `root` that breaks the layer rules. */
export async function layerViolations(root: string): Promise<Violation[]> {
  const out: Violation[] = [];
  for await (const from of sources(root)) {
    const text = await Deno.readTextFile(join(root, from));
    for (const m of text.matchAll(IMPORT)) {
      const to = normalize(join(dirname(from), m[1]));
      const reason = checkEdge(from, to);
      if (reason) out.push({ from, to, reason });
    }
  }
  return out.sort((x, y) => x.from.localeCompare(y.from) || x.to.localeCompare(y.to));
}

if (import.meta.main) {
  const root = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));
  const bad = await layerViolations(root);
  for (const v of bad) console.log(`${v.from} -> ${v.to}: ${v.reason}`);
  console.log(bad.length ? `${bad.length} layer violation(s)` : "layers: no upward imports");
  if (bad.length) Deno.exit(1);
}
