/**
 * A run directory: `runs/<task>-<YYYYMMDD-HHMMSS>/` holding config.yaml, metrics.jsonl,
 * summary.json, summary.md and any other artifacts (plots, checkpoints).
 *
 * Every file is written atomically (see {@link atomicWrite}) except metrics.jsonl, which is
 * appended to: each record is one `write` of a whole line in append mode, so a crash can at worst
 * leave a truncated last line. {@link RunDir.readMetrics} drops such a line and
 * {@link RunDir.open} trims it off before new lines are appended.
 * @module
 */

import { UserError } from "../util/errors.ts";
import { dirname, join } from "node:path";
import { atomicWrite } from "../util/atomic.ts";
import { configToYaml } from "./config.ts";

const pad = (n: number) => String(n).padStart(2, "0");

/** `YYYYMMDD-HHMMSS` in local time. */
export function timestamp(d: Date = new Date()): string {
  return `${d.getFullYear()}${pad(d.getMonth() + 1)}${pad(d.getDate())}-` +
    `${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
}

/** Parses metrics.jsonl text; a last line without its newline that does not parse is dropped. */
function parseMetrics(text: string, path: string): Record<string, unknown>[] {
  const lines = text.split("\n");
  const tail = lines.pop()!; // "" when the file ends with a newline
  const out = lines.filter((l) => l.trim()).map((l, i) => {
    try {
      return JSON.parse(l);
    } catch {
      throw new Error(`${path}: line ${i + 1} is not valid JSON: ${l.slice(0, 80)}`);
    }
  });
  try {
    if (tail.trim()) out.push(JSON.parse(tail));
  } catch {
    // a record cut short by a crash: drop it
  }
  return out;
}

/** A run directory; create one with {@link RunDir.create} or reopen one with {@link RunDir.open}. */
export class RunDir {
  private constructor(
    /** The directory path. */
    readonly path: string,
  ) {}

  /**
   * Creates `out` (which must not already hold a run), or else a fresh `<root>/<task>-<stamp>/`
   * (with `-2`, `-3`, ... appended if that name is taken).
   */
  static async create(
    opts: { task: string; out?: string; root?: string; now?: Date },
  ): Promise<RunDir> {
    if (opts.out) {
      await Deno.mkdir(opts.out, { recursive: true });
      const taken = await Deno.stat(join(opts.out, "config.yaml")).then(() => true, () => false);
      if (taken) {
        throw new UserError(
          `${opts.out} already holds a run; use --resume ${opts.out} to continue it`,
        );
      }
      return new RunDir(opts.out);
    }
    const root = opts.root ?? "runs";
    await Deno.mkdir(root, { recursive: true });
    const base = join(root, `${opts.task}-${timestamp(opts.now)}`);
    for (let i = 1;; i++) {
      const path = i === 1 ? base : `${base}-${i}`;
      try {
        await Deno.mkdir(path);
        return new RunDir(path);
      } catch (err) {
        if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      }
    }
  }

  /** Opens an existing run directory (for `--resume`), trimming a truncated last metrics line. */
  static async open(path: string): Promise<RunDir> {
    const info = await Deno.stat(path).catch(() => null);
    if (!info?.isDirectory) throw new UserError(`cannot resume: ${path} is not a run directory`);
    const run = new RunDir(path);
    const metrics = run.file("metrics.jsonl");
    const text = await Deno.readTextFile(metrics).catch(() => "");
    if (text && !text.endsWith("\n")) {
      const records = parseMetrics(text, metrics);
      await atomicWrite(metrics, records.map((r) => JSON.stringify(r) + "\n").join(""));
    }
    return run;
  }

  /** The path of `name` inside the run directory. */
  file(name: string): string {
    return join(this.path, name);
  }

  /** Writes `data` to `name` (sub-folders are created) atomically. */
  async writeFile(name: string, data: Uint8Array | string): Promise<void> {
    const path = this.file(name);
    await Deno.mkdir(dirname(path), { recursive: true });
    await atomicWrite(path, data);
  }

  /** Saves the resolved config as config.yaml. */
  writeConfig(cfg: unknown): Promise<void> {
    return this.writeFile("config.yaml", configToYaml(cfg));
  }

  /** Appends one record to metrics.jsonl as a single line (NaN and Infinity become null). */
  async appendMetrics(record: Record<string, unknown>): Promise<void> {
    const line = new TextEncoder().encode(JSON.stringify(record) + "\n");
    await Deno.writeFile(this.file("metrics.jsonl"), line, { append: true });
  }

  /** Reads metrics.jsonl ([] if absent), dropping a last line cut short by a crash. */
  async readMetrics(): Promise<Record<string, unknown>[]> {
    const path = this.file("metrics.jsonl");
    try {
      return parseMetrics(await Deno.readTextFile(path), path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return [];
      throw err;
    }
  }

  /** Writes summary.json and summary.md. */
  async writeSummary(json: unknown, markdown: string): Promise<void> {
    await this.writeFile("summary.json", JSON.stringify(json, null, 2) + "\n");
    await this.writeFile("summary.md", markdown.endsWith("\n") ? markdown : markdown + "\n");
  }
}
