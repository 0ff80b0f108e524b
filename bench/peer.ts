/**
 * autoloss against PyTorch CPU, side by side in one run: our workloads on one backend (the CPU
 * backend by default), and bench/torch_peer.py on the same machine right before and right after
 * (Debian's default OpenBLAS, then with its AVX-512 "SkylakeX" kernels forced: the tuned peer),
 * each workload at the same shapes and update rules (see torch_peer.py for what mirrors what).
 * Prints a markdown table of milliseconds per step and the ratio ours / PyTorch (PyTorch's best
 * of 1 and 2 threads, the better of its two OpenBLAS settings), and writes the whole result as
 * JSON with `--out`.
 *
 * Workloads: matmul 256/512/1024; the quick GAN step (`train gan`'s quick preset, D and G steps
 * alternating, with the features a controller reads); the authors' DCGAN D+G iteration at batch
 * 64 (bench/dcgan_step.ts); the MLP 100-64-1 Adam step at batch 128 (bench/mlp_step.ts); the
 * regression population step (50 members, joint loss, as bench/dgs.ts); the NMT step at the
 * paper's sizes (batch 32, length 20, vocabularies 5000, E128 H256, 2 layers; tasks/nmt/profile.ts).
 *
 * Run: `npx -y deno@2.9.6 run -A bench/peer.ts [--backend cpu|webgpu] [--only NAME,...]
 * [--iters 7] [--no-torch] [--out FILE.json]` (about 6 minutes on 2 cores). Timing: per
 * workload, warmup steps, then `iters` iterations of R steps and one sync (R chosen so that an
 * iteration lasts >= 50 ms); median and best ms per step.
 * @module
 */

import { parseArgs } from "node:util";
import { backend, init, parseBackendChoice } from "../gpu/backend.ts";
import { tidy } from "../tensor/tensor.ts";
import { randn } from "../tensor/functional.ts";
import { regressionProblem } from "../tasks/l1/problems.ts";
import { ganWorkload } from "../tasks/gan/profile.ts";
import { syntheticMtStep } from "../tasks/nmt/profile.ts";
import { dcganStep } from "./dcgan_step.ts";
import { mlpWorkload } from "./mlp_step.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "cpu" },
    only: { type: "string" },
    iters: { type: "string", default: "7" },
    "no-torch": { type: "boolean", default: false },
    out: { type: "string" },
  },
});
const iters = Number(values.iters);
const only = values.only?.split(",");

/** Something that records training step `i` (no sync) and frees what it holds. */
interface Stepper {
  step(i: number): void;
  dispose(): void;
}

/** A step our side times: `step()` records one step (awaited sync after R of them). */
interface Ours {
  name: string;
  /** The torch_peer.py workload(s) it is compared with. */
  torch: string;
  make(): Promise<Stepper> | Stepper;
  /** Steps per timed unit (the GAN: a D and a G step; reported per step). */
  perUnit?: number;
}

function matmul(s: number): Ours {
  return {
    name: `matmul_${s}`,
    torch: `matmul_${s}`,
    make() {
      const a = randn([s, s]);
      const b = randn([s, s]);
      return {
        step: () => a.matmul(b).dispose(),
        dispose() {
          a.dispose();
          b.dispose();
        },
      };
    },
  };
}

const WORKLOADS: Ours[] = [
  matmul(256),
  matmul(512),
  matmul(1024),
  {
    name: "gan_quick_step",
    torch: "gan_quick_step",
    async make() {
      const w = await ganWorkload({
        command: "profile",
        task: "gan",
        args: [],
        preset: "quick",
        config: [],
        set: [],
      });
      return w;
    },
  },
  {
    name: "dcgan_authors_step",
    torch: "dcgan_authors_step",
    make: () => dcganStep(64),
  },
  {
    name: "mlp_step",
    torch: "mlp_step",
    make: () =>
      mlpWorkload({ kind: "mlp", batch: 128, inDim: 100, hidden: 64, outDim: 1, lr: 1e-3 }),
  },
  {
    name: "regression_step",
    torch: "regression_step",
    make() {
      const problem = regressionProblem({
        data: { seed: 1, dim: 16, sizes: [200, 200, 200, 200, 200], noiseStd: 2 },
        model: { form: "authors", quadScale: 0 },
        train: {
          lr: 5e-4,
          lambda: 0.2,
          valEvery: 10,
          featureValEvery: 1,
          features: "authors",
          improvementDecay: 0.8,
        },
        rewardC: 20000,
      });
      const lambdas = Array.from({ length: 50 }, (_, i) => 0.01 * 320 ** (i / 49));
      const task = problem.create({
        population: 50,
        lambda: lambdas,
        mode: "joint",
        data: "task",
        steps: 200,
      });
      task.reset(1);
      const actions = new Int32Array(50);
      return { step: () => task.step(actions), dispose: () => task.dispose() };
    },
  },
  {
    name: "nmt_step",
    torch: "nmt_step",
    make: () =>
      syntheticMtStep({
        batch: 32,
        length: 20,
        vocab: 5000,
        model: { emb: 128, hidden: 256, encoderLayers: 2, decoderHidden: 256, decoderLayers: 2 },
      }),
  },
];

/** Median and best ms per step of `w`. */
async function time(w: Stepper): Promise<{ median: number; best: number; reps: number }> {
  const be = backend();
  let i = 0;
  const once = async (reps: number) => {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) tidy(() => w.step(i++));
    await be.sync();
    return (performance.now() - t0) / reps;
  };
  await once(2);
  const probe = await once(1);
  const reps = Math.max(1, Math.min(200, Math.ceil(50 / Math.max(probe, 0.01))));
  const t: number[] = [];
  for (let i = 0; i < iters; i++) t.push(await once(reps));
  t.sort((a, b) => a - b);
  return { median: t[Math.floor(t.length / 2)], best: t[0], reps };
}

type TorchResult = {
  workloads: Record<
    string,
    { ms_1t?: number; ms_2t?: number; ms_min_1t?: number; ms_min_2t?: number }
  >;
  [k: string]: unknown;
};

/** Runs bench/torch_peer.py (null when torch is missing). */
async function torch(coretype?: string): Promise<TorchResult | null> {
  const script = new URL("./torch_peer.py", import.meta.url).pathname;
  const args = [script, "--iters", String(iters)];
  if (coretype) args.push("--openblas-coretype", coretype);
  if (only) args.push("--only", only.map((n) => (n.startsWith("gan") ? "gan_quick" : n)).join(","));
  try {
    const out = await new Deno.Command("/usr/bin/python3", { args, stderr: "inherit" }).output();
    if (out.code !== 0) return null;
    return JSON.parse(new TextDecoder().decode(out.stdout));
  } catch {
    return null;
  }
}

const workloads = WORKLOADS.filter((w) => !only || only.includes(w.name));
const useTorch = !values["no-torch"];
const torchDefault = useTorch ? await torch() : null;
if (useTorch && !torchDefault) {
  console.error(
    "PyTorch not found: apt-get install python3-torch python3-numpy libopenblas0-pthread " +
      "(/usr/bin/python3); continuing without the peer",
  );
}
const be = await init({ backend: parseBackendChoice(values.backend!, "--backend") });
const ours: Record<string, { median: number; best: number; reps: number }> = {};
for (const w of workloads) {
  const made = await w.make();
  try {
    ours[w.name] = await time(made);
  } finally {
    made.dispose();
  }
  console.error(
    `ours ${w.name}: ${ours[w.name].median.toFixed(2)} ms (best ${ours[w.name].best.toFixed(2)})`,
  );
}
const torchTuned = torchDefault ? await torch("SkylakeX") : null;

/** PyTorch's best median over thread counts for `name` in `r`. */
function peer(r: TorchResult | null, name: string): number | null {
  const x = r?.workloads[name];
  if (!x) return null;
  const ms = [x.ms_1t, x.ms_2t].filter((v): v is number => typeof v === "number");
  return ms.length ? Math.min(...ms) : null;
}

const cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.+)/)?.[1] ?? "?";
const rows = workloads.map((w) => {
  const mine = ours[w.name];
  const d = peer(torchDefault, w.torch);
  const t = peer(torchTuned, w.torch);
  const best = [d, t].filter((v): v is number => v !== null);
  const p = best.length ? Math.min(...best) : null;
  const f = (v: number | null) => (v === null ? "-" : v < 10 ? v.toFixed(2) : v.toFixed(1));
  return {
    name: w.name,
    ours: mine,
    torchDefault: d,
    torchTuned: t,
    ratio: p ? mine.median / p : null,
    line: `| ${w.name} | ${f(mine.median)} (${f(mine.best)}) | ${f(d)} | ${f(t)} | ${
      p ? `${(mine.median / p).toFixed(2)}x` : "-"
    } |`,
  };
});
console.log(
  `\n${be.info.kind} backend: ${be.info.device}; CPU ${cpu}; ${navigator.hardwareConcurrency} ` +
    `cores; Deno ${Deno.version.deno}; PyTorch ${torchDefault?.torch ?? "-"} ` +
    `(${torchDefault?.openblas_core ?? "?"} / SkylakeX OpenBLAS kernels)\n`,
);
console.log(
  "| workload | ours ms/step median (best) | PyTorch ms, default OpenBLAS | PyTorch ms, SkylakeX | ours / PyTorch |",
);
console.log("| --- | --- | --- | --- | --- |");
for (const r of rows) console.log(r.line);
if (values.out) {
  await Deno.writeTextFile(
    values.out,
    JSON.stringify({ backend: be.info, cpu, rows, torchDefault, torchTuned }, null, 2) + "\n",
  );
}
be.close();
