/**
 * The fused LSTM scan against the per-step composition it replaced, side by side in one run: the
 * NMT step at the paper's sizes (batch 32, length 20, vocabularies 5000, E128 H256, 2 layers:
 * tasks/nmt/profile.ts) with `setLstmScan(true)` and `(false)`, kernels per step, ms per step (the
 * profiler's timed steps), matmuls and other kernels. Prints the CPU, the backend and a markdown table.
 *
 * Run: `npx -y deno@2.9.6 run -A bench/lstm_scan.ts [--backend cpu|webgpu] [--steps 3]
 * [--batch 32]`.
 * @module
 */

import { parseArgs } from "node:util";
import { init, parseBackendChoice } from "../gpu/backend.ts";
import { setLstmScan } from "../nn/rnn.ts";
import { profileWorkload } from "../run/profile.ts";
import { syntheticMtStep } from "../tasks/nmt/profile.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    backend: { type: "string", default: "auto" },
    steps: { type: "string", default: "3" },
    batch: { type: "string", default: "32" },
  },
});
const be = await init({ backend: parseBackendChoice(values.backend, "--backend") });
const cpu = (await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))
  .match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
console.log(`CPU: ${cpu}; backend: ${be.info.kind} (${be.info.device})`);
const rows: string[] = [];
for (const scan of [false, true, true, false]) {
  setLstmScan(scan);
  const w = syntheticMtStep({
    batch: Number(values.batch),
    length: 20,
    vocab: 5000,
    model: { emb: 128, hidden: 256, encoderLayers: 2, decoderHidden: 256, decoderLayers: 2 },
  });
  const r = await profileWorkload(w, { warmup: 1, steps: Number(values.steps) });
  w.dispose();
  const calls = (f: (name: string) => boolean) =>
    r.kernels.filter((k) => f(k.name)).reduce((a, k) => a + k.callsPerStep, 0);
  rows.push(
    `| ${scan ? "fused scan" : "composition"} | ${r.dispatchesPerStep} | ${
      calls((n) => n === "matmul")
    } | ${calls((n) => n !== "matmul")} | ${r.msPerStep.toFixed(1)} |`,
  );
}
console.log(
  [
    "| LSTM recurrence | kernels/step | matmuls | other kernels | ms/step |",
    "|---|---|---|---|---|",
    ...rows,
  ].join("\n"),
);
