/**
 * The autoloss command line: `train`, `compare`, `eval`, `transfer`, `baseline` (dispatched to the
 * tasks in tasks/registry.ts) and `info`. Run with `--help` for usage.
 * @module
 */

import { parseArgs } from "node:util";
import { init, parseBackendChoice } from "./gpu/backend.ts";
import { adapterInfo, getAdapter, NoAdapterError } from "./gpu/webgpu/device.ts";
import { tunedMatmulChoices } from "./gpu/webgpu/autotune.ts";
import { ConfigError } from "./run/config.ts";
import { userMessage } from "./util/errors.ts";
import { formatProfile, profileWorkload, writeProfile } from "./run/profile.ts";
import { didYouMean } from "./run/suggest.ts";
import { type CommonOptions, getTask, listTasks, type TaskCommand } from "./tasks/registry.ts";
import "./tasks/mod.ts";

const PROG = "npx -y deno@2.9.6 run -A cli.ts";

/** Where the CLI prints; injectable for tests. */
export interface Io {
  /** Normal output (stdout). */
  out(text: string): void;
  /** Errors and usage problems (stderr). */
  err(text: string): void;
}

const OPTIONS = {
  preset: { type: "string", default: "quick" },
  config: { type: "string", multiple: true, default: [] as string[] },
  set: { type: "string", multiple: true, default: [] as string[] },
  out: { type: "string" },
  resume: { type: "string" },
  seed: { type: "string" },
  backend: { type: "string" },
  steps: { type: "string" },
  warmup: { type: "string" },
  workers: { type: "string" },
  "job-members": { type: "string" },
  insecure: { type: "boolean" },
  creds: { type: "string" },
  nkey: { type: "string" },
  "tls-ca": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;
const INFO_OPTIONS = { help: OPTIONS.help, backend: OPTIONS.backend } as const;
const WORKER_OPTIONS = {
  nats: { type: "string" },
  "max-jobs": { type: "string" },
  insecure: OPTIONS.insecure,
  creds: OPTIONS.creds,
  nkey: OPTIONS.nkey,
  "tls-ca": OPTIONS["tls-ca"],
  backend: OPTIONS.backend,
  help: OPTIONS.help,
} as const;
const NATS_HELP =
  `  --creds FILE          NATS credentials file (JWT and NKey seed); or a token or user and
                        password in the URL (nats://TOKEN@HOST:PORT, nats://USER:PASS@HOST:PORT)
  --nkey FILE           file with an NKey user seed
  --tls-ca FILE         CA certificate (PEM) to verify the server with (tls:// URLs use TLS)
  --insecure            allow a server without credentials (a local test server only)`;

const OPTIONS_HELP = `Options:
  --preset quick|paper  config preset (default quick): quick runs in minutes on a laptop,
                        paper uses the paper's sizes
  --config FILE.yaml    YAML config layered over the preset (repeatable; later files win)
  --set KEY=VALUE       override one config key by dotted path, e.g. --set optim.lr=0.001
                        (repeatable; applied last)
  --out DIR             run directory to create (default runs/<task>-<YYYYMMDD-HHMMSS>)
  --resume RUNDIR       continue an interrupted run from its directory
  --seed N              random seed (a non-negative integer)
  --backend NAME        webgpu, cpu or auto (default auto, or AUTOLOSS_BACKEND): auto runs
                        WebGPU on a hardware GPU and the CPU backend otherwise
  --workers URL         run jobs on the workers of the NATS server at URL (see the worker
                        command): train regression|mlp (each round's episodes), compare
                        regression|mlp (also Table 1's methods), compare gan (each method x
                        seed run), train gan with controller.algorithm=reinforce (each
                        update's episodes: controller.reinforce.batch), compare nmt (each
                        method); refused by train gan's online PPO and train nmt (sequential)
  --job-members M       with --workers, regression|mlp: members of a round per job (default
                        1); more keeps the lockstep batching, fewer spreads wider
${NATS_HELP}
  -h, --help            show this help`;

const COMMANDS: Record<string, { usage: string; about: string; examples: string[] }> = {
  train: {
    usage: "train <task> [options]",
    about: "Train the RL controller that schedules <task>'s optimization; writes a run directory.",
    examples: [
      "train gan",
      "train gan --preset paper --seed 1",
      "train gan --config my.yaml --set optim.lr=0.0005 --out runs/gan-lr",
      "train gan --resume runs/gan-20250101-120000",
    ],
  },
  compare: {
    usage: "compare <task> [options]",
    about: "Compare the learned controller with fixed-schedule baselines on <task>.\n" +
      "Runs both with the same seeds and reports them side by side (summary.md, plots).",
    examples: ["compare gan", "compare gan --preset paper --seed 3 --out runs/gan-compare"],
  },
  eval: {
    usage: "eval <task> <RUNDIR> [options]",
    about: "Evaluate the controller saved in RUNDIR on <task>.",
    examples: ["eval gan runs/gan-20250101-120000", "eval gan runs/gan-20250101-120000 --seed 7"],
  },
  transfer: {
    usage: "transfer <task> <RUNDIR> [options]",
    about: "Apply a controller trained in RUNDIR (on another task or config) to <task>.",
    examples: [
      "transfer gan runs/gan-20250101-120000 --set model.width=128",
      "transfer regression runs/regression-20250101-120000 --preset paper",
    ],
  },
  baseline: {
    usage: "baseline <task> [options]",
    about: "Train <task> with a fixed, hand-designed schedule (no controller), for reference.",
    examples: ["baseline gan", "baseline gan --set schedule.ratio=5 --seed 2"],
  },
  profile: {
    usage: "profile <task> [--steps N] [--warmup N] [--out FILE.json] [options]",
    about:
      "Profile one training step of <task> at its config's sizes: wall time per step and, per\n" +
      "kernel and shape, calls, milliseconds, share of the step and GFLOP/s (--out: as JSON).",
    examples: [
      "profile gan",
      "profile gan --backend webgpu --steps 5",
      "profile nmt --preset paper --set train.batch=32",
      "profile regression --out runs/profile-regression.json",
    ],
  },
  worker: {
    usage: "worker --nats URL [--creds FILE|--nkey FILE] [--tls-ca FILE] [--insecure]",
    about: "Pull episode jobs from a NATS JetStream server and run them until stopped (Ctrl-C\n" +
      "finishes the current job, a second Ctrl-C releases it to another worker).",
    examples: [
      "worker --nats nats://s3cret@10.0.0.5:4222",
      "worker --nats tls://nats.example.org:4222 --creds worker.creds --tls-ca ca.pem",
      "worker --nats nats://127.0.0.1:4222 --insecure",
    ],
  },
  info: {
    usage: "info",
    about:
      "Print the backend that runs (and why), the WebGPU adapter and its limits, and the tasks.",
    examples: ["info", "info --backend cpu", "DENO_WEBGPU_BACKEND=vulkan " + PROG + " info"],
  },
};

function taskList(): string {
  const tasks = listTasks();
  if (!tasks.length) return "Tasks: none registered yet.";
  const width = Math.max(...tasks.map((t) => t.name.length));
  return "Tasks:\n" + tasks.map((t) => `  ${t.name.padEnd(width)}  ${t.description}`).join("\n");
}

function usage(): string {
  const cmds = Object.entries(COMMANDS).map(([name, c]) =>
    `  ${name.padEnd(9)} ${c.about.split("\n")[0]}`
  );
  return [
    "autoloss: learn optimization schedules with an RL controller, on WebGPU.",
    "",
    `Usage: ${PROG} <command> [options]`,
    "",
    "Commands:",
    ...cmds,
    "",
    taskList(),
    "",
    "Examples:",
    `  ${PROG} info`,
    `  ${PROG} train gan --preset quick`,
    `  ${PROG} train --help`,
  ].join("\n");
}

function commandHelp(name: string): string {
  const c = COMMANDS[name];
  return [
    `Usage: ${PROG} ${c.usage}`,
    "",
    c.about,
    "",
    ...(name === "worker"
      ? [
        "Options:\n  --nats URL            the server (nats://HOST:PORT or tls://HOST:PORT)\n" +
        "  --max-jobs N          exit after N jobs (default: run until stopped)\n" +
        NATS_HELP + "\n  --backend NAME        webgpu, cpu or auto (default auto)\n" +
        "  -h, --help            show this help",
      ]
      : name === "info"
      ? [
        "Options:\n  --backend NAME        webgpu, cpu or auto (default auto)\n" +
        "  -h, --help            show this help",
      ]
      : [OPTIONS_HELP]),
    ...(name === "info" || name === "worker" ? [] : ["", taskList()]),
    "",
    "Examples:",
    ...c.examples.map((e) => e.includes(PROG) ? `  ${e}` : `  ${PROG} ${e}`),
  ].join("\n");
}

/** Turns a parseArgs error into a message with a suggestion for a mistyped flag. */
function flagError(err: unknown, flags: string[]): string {
  const msg = err instanceof Error ? err.message : String(err);
  const bad = /Unknown option '(-{1,2}[^'=]+)/.exec(msg)?.[1];
  return bad ? `unknown option '${bad}'${didYouMean(bad, flags)}` : msg;
}

async function info(io: Io): Promise<number> {
  const be = await init();
  const lines = [
    `backend:      ${be.info.kind} (${be.info.reason})`,
    `device:       ${be.info.device}`,
    `deno:         ${Deno.version.deno}`,
  ];
  if (await getAdapter()) {
    const r = await adapterInfo();
    const width = Math.max(...Object.keys(r.limits).map((k) => k.length));
    lines.push(
      `adapter:      ${r.description || "(no description)"}`,
      `vendor:       ${r.vendor || "-"}`,
      `architecture: ${r.architecture || "-"}`,
      `fallback:     ${r.isFallbackAdapter ? "yes (software rendering: slow)" : "no"}`,
      `wgpu backend: ${r.backend}`,
      `features:     ${r.features.join(", ") || "-"}`,
      "limits:",
      ...Object.entries(r.limits).map(([k, v]) =>
        `  ${k.padEnd(width)}  ${Number(v).toLocaleString("en")}`
      ),
    );
  } else {
    lines.push("adapter:      none (no WebGPU adapter: the CPU backend runs everything)");
  }
  if (be.info.kind === "webgpu") {
    const t = tunedMatmulChoices();
    lines.push(
      `autotune:     ${t.enabled ? "on" : "off"} (${t.reason}); cache ${
        t.cacheFile ?? "in memory"
      }`,
      ...t.entries.map((e) => `  ${e.shapeClass}: ${e.name} (measured on ${e.measuredOn})`),
    );
  }
  lines.push(taskList());
  io.out(lines.join("\n"));
  return 0;
}

async function profile(
  positionals: string[],
  values: { preset: string; config: string[]; set: string[]; out?: string; seed?: string },
  steps: string | undefined,
  warmup: string | undefined,
  io: Io,
): Promise<number> {
  const fail = (msg: string) => (io.err(`error: ${msg}`), 2);
  const [name] = positionals;
  const names = listTasks().filter((t) => t.profile).map((t) => t.name);
  if (!name) {
    return fail(`missing <task>: usage: ${COMMANDS.profile.usage}; tasks: ${names.join(", ")}`);
  }
  const task = getTask(name);
  if (!task?.profile) {
    return fail(
      `no profile for task '${name}'${didYouMean(name, names) || ";"} tasks: ${names.join(", ")}`,
    );
  }
  const int = (v: string | undefined, flag: string, dflt: number, min: number) => {
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v) || Number(v) < min) {
      throw new ConfigError(`${flag} must be an integer >= ${min}, got '${v}'`);
    }
    return Number(v);
  };
  const { preset, config, set, out } = values;
  if (preset !== "quick" && preset !== "paper") return fail(`--preset must be quick or paper`);
  const opts: CommonOptions = { command: "profile", task: name, args: [], preset, config, set };
  if (values.seed !== undefined) opts.seed = int(values.seed, "--seed", 0, 0);
  const w = await task.profile(opts);
  try {
    const report = await profileWorkload(w, {
      steps: int(steps, "--steps", 10, 1),
      warmup: int(warmup, "--warmup", 3, 0),
    });
    io.out(formatProfile(report));
    if (out) {
      await writeProfile(out, report);
      io.out(`wrote ${out}`);
    }
  } finally {
    w.dispose();
  }
  return 0;
}

/** The NATS connection flags as `CommonOptions.workers` takes them. */
function natsFlags(
  url: string,
  v: { insecure?: boolean; creds?: string; nkey?: string; "tls-ca"?: string },
): NonNullable<CommonOptions["workers"]> {
  return { url, insecure: v.insecure, creds: v.creds, nkey: v.nkey, tlsCa: v["tls-ca"] };
}

async function worker(
  values: {
    nats?: string;
    "max-jobs"?: string;
    insecure?: boolean;
    creds?: string;
    nkey?: string;
    "tls-ca"?: string;
  },
  io: Io,
): Promise<number> {
  if (!values.nats) {
    io.err(`error: missing --nats URL: usage: ${COMMANDS.worker.usage}`);
    return 2;
  }
  const max = values["max-jobs"];
  if (max !== undefined && !/^[1-9]\d*$/.test(max)) {
    io.err(`error: --max-jobs must be a positive integer, got '${max}'`);
    return 2;
  }
  // Loaded only here and for --workers, by a computed specifier so that Deno does not even fetch
  // the NATS client for a plain run.
  const dist = new URL("./dist/worker.ts", import.meta.url).href;
  const { runWorker }: typeof import("./dist/worker.ts") = await import(dist);
  await runWorker({
    ...natsFlags(values.nats, values),
    maxJobs: max === undefined ? undefined : Number(max),
    log: io.err,
  });
  return 0;
}

async function runTask(
  command: TaskCommand,
  positionals: string[],
  values: {
    preset: string;
    config: string[];
    set: string[];
    out?: string;
    resume?: string;
    workers?: string;
    "job-members"?: string;
    insecure?: boolean;
    creds?: string;
    nkey?: string;
    "tls-ca"?: string;
  },
  seed: string | undefined,
  io: Io,
): Promise<number> {
  const fail = (msg: string) => (io.err(`error: ${msg}`), 2);
  const [name, ...args] = positionals;
  const names = listTasks().map((t) => t.name);
  const known = names.length ? `known tasks: ${names.join(", ")}` : "no tasks are registered yet";
  if (!name) return fail(`missing <task>: usage: ${COMMANDS[command].usage}; ${known}`);
  const task = getTask(name);
  if (!task) return fail(`unknown task '${name}'${didYouMean(name, names) || ";"} ${known}`);
  const handler = task[command];
  if (!handler) return fail(`task '${name}' does not support '${command}'`);
  const { preset, config, set, out, resume } = values;
  if (preset !== "quick" && preset !== "paper") {
    return fail(
      `--preset must be quick or paper, got '${preset}'${didYouMean(preset, ["quick", "paper"])}`,
    );
  }
  if (seed !== undefined && !/^\d+$/.test(seed)) {
    return fail(`--seed must be a non-negative integer, got '${seed}'`);
  }
  if (out && resume) return fail("--out and --resume cannot be used together");
  const opts: CommonOptions = { command, task: name, args, preset, config, set, out, resume };
  if (seed !== undefined) opts.seed = Number(seed);
  if (values.workers !== undefined) {
    if (command === "train" && name === "nmt") {
      return fail(
        "train nmt trains its PPO controller online, one batch after another: nothing to run " +
          "on workers (compare nmt --workers runs the methods in parallel)",
      );
    }
    if (!["train", "compare"].includes(command) || !WORKER_TASKS.includes(name)) {
      return fail(
        `--workers works with train regression|mlp|gan and compare regression|mlp|gan|nmt only`,
      );
    }
    opts.workers = natsFlags(values.workers, values);
    const m = values["job-members"];
    if (m !== undefined) {
      if (!/^[1-9]\d*$/.test(m)) {
        return fail(`--job-members must be a positive integer, got '${m}'`);
      }
      opts.workers.membersPerJob = Number(m);
    }
    if (m !== undefined && !["regression", "mlp"].includes(name)) {
      return fail(
        `--job-members applies to regression|mlp only (a ${name} job is one run or episode)`,
      );
    }
  } else if (values["job-members"] !== undefined) {
    return fail("--job-members needs --workers");
  }
  return (await handler(opts)) ?? 0;
}

/** The tasks whose train or compare take `--workers`. */
const WORKER_TASKS = ["regression", "mlp", "gan", "nmt"];

const consoleIo: Io = { out: (t) => console.log(t), err: (t) => console.error(t) };

/**
 * Runs the CLI on `args` (without the program name) and returns the exit code: 0 success,
 * 1 failure (e.g. no GPU adapter), 2 usage or config error.
 */
export async function main(args: string[], io: Io = consoleIo): Promise<number> {
  const [cmd, ...rest] = args;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    const topic = cmd === "help" ? rest[0] : undefined;
    if (topic === undefined || !(topic in COMMANDS)) (cmd ? io.out : io.err)(usage());
    else io.out(commandHelp(topic));
    return cmd === undefined ? 2 : 0;
  }
  if (!Object.hasOwn(COMMANDS, cmd)) {
    io.err(
      `error: unknown command '${cmd}'${didYouMean(cmd, Object.keys(COMMANDS)) || ";"}` +
        ` commands: ${Object.keys(COMMANDS).join(", ")} (see ${PROG} --help)`,
    );
    return 2;
  }
  const parse = <T>(options: object, run: () => T): T | null => {
    try {
      return run();
    } catch (err) {
      const flags = Object.keys(options).map((k) => `--${k}`);
      io.err(`error: ${flagError(err, flags)} (see ${PROG} ${cmd} --help)`);
      return null;
    }
  };
  const argv = { args: rest, allowPositionals: true, strict: true } as const;
  try {
    if (cmd === "info") {
      const p = parse(INFO_OPTIONS, () => parseArgs({ ...argv, options: INFO_OPTIONS }));
      if (!p || p.positionals.length) {
        if (p) io.err(`error: info takes no arguments, got '${p.positionals.join(" ")}'`);
        return 2;
      }
      if (p.values.help) io.out(commandHelp(cmd));
      if (p.values.backend) {
        await init({ backend: parseBackendChoice(p.values.backend, "--backend") });
      }
      return p.values.help ? 0 : await info(io);
    }
    if (cmd === "worker") {
      const p = parse(WORKER_OPTIONS, () => parseArgs({ ...argv, options: WORKER_OPTIONS }));
      if (!p || p.positionals.length) {
        if (p) io.err(`error: worker takes no arguments, got '${p.positionals.join(" ")}'`);
        return 2;
      }
      if (p.values.help) {
        io.out(commandHelp(cmd));
        return 0;
      }
      if (p.values.backend) {
        await init({ backend: parseBackendChoice(p.values.backend, "--backend") });
      }
      return await worker(p.values, io);
    }
    const p = parse(OPTIONS, () => parseArgs({ ...argv, options: OPTIONS }));
    if (!p) return 2;
    if (p.values.help) {
      io.out(commandHelp(cmd));
      return 0;
    }
    if (p.values.backend) {
      await init({ backend: parseBackendChoice(p.values.backend, "--backend") });
    }
    if (cmd === "profile") {
      return await profile(p.positionals, p.values, p.values.steps, p.values.warmup, io);
    }
    if (p.values.steps !== undefined || p.values.warmup !== undefined) {
      io.err(`error: --steps and --warmup belong to the profile command`);
      return 2;
    }
    return await runTask(cmd as TaskCommand, p.positionals, p.values, p.values.seed, io);
  } catch (err) {
    if (err instanceof NoAdapterError) {
      io.err((err as Error).message);
      return 1;
    }
    const message = userMessage(err);
    if (message === null) throw err;
    io.err(`error: ${message}`);
    return err instanceof ConfigError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
