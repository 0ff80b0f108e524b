/**
 * Test helpers: backend setup, a central-difference gradient checker that batches every perturbed
 * evaluation into one readback, and approximate comparisons.
 * @module
 */

import { mulberry32 } from "../nn/host_random.ts";
import assert from "node:assert/strict";
import { init } from "../gpu/backend.ts";
import { readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { tensor } from "../tensor/functional.ts";

/** Initializes the GPU backend (idempotent). */
export async function setup(): Promise<void> {
  await init();
}

/** A deterministic pseudo-random generator for test data (mulberry32). */
export const rng: (seed: number) => () => number = mulberry32;

/** Random f32 data in [lo, hi), optionally kept at least `gap` away from 0 (for kinks). */
export function randomData(n: number, seed: number, lo = -1, hi = 1, gap = 0): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => {
    let v = lo + (hi - lo) * r();
    if (gap > 0 && Math.abs(v) < gap) v = v < 0 ? v - gap : v + gap;
    return v;
  });
}

/** Asserts |a - b| <= atol + rtol |b| elementwise, with a message naming the first failure. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol = 1e-5,
  rtol = 1e-4,
  what = "",
): void {
  assert.equal(
    actual.length,
    expected.length,
    `${what}: length ${actual.length} vs ${expected.length}`,
  );
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue;
    const ok = Math.abs(a - e) <= atol + rtol * Math.abs(e);
    if (!ok) {
      assert.fail(`${what}: element ${i}: got ${a}, expected ${e} (atol ${atol}, rtol ${rtol})`);
    }
  }
}

/** An input for {@link gradCheck}: data and shape (and optionally no gradient check for it). */
export interface GradInput {
  /** Values. */
  data: Float32Array | Int32Array;
  /** Shape. */
  shape: number[];
  /** i32 inputs (indices) are passed through and not differentiated. */
  dtype?: "f32" | "i32";
}

/**
 * Checks the autograd gradient of `fn` against central differences of the scalar
 * `sum(fn(x) * w)` for fixed random `w`. All perturbed evaluations are read in one round trip.
 */
export async function gradCheck(
  name: string,
  fn: (...xs: Tensor[]) => Tensor,
  inputs: GradInput[],
  { eps = 1e-2, atol = 2e-2, rtol = 2e-2 } = {},
): Promise<void> {
  const make = (data: Float32Array | Int32Array, i: number) =>
    tensor(data, inputs[i].shape, inputs[i].dtype ?? "f32");
  // Analytic gradients.
  const leaves = inputs.map((inp, i) => make(inp.data, i));
  for (const [i, l] of leaves.entries()) {
    if ((inputs[i].dtype ?? "f32") === "f32") l.requiresGrad_();
  }
  const out = fn(...leaves);
  const w = tensor(randomData(out.size, 99), [...out.shape]);
  const loss = out.mul(w).sum();
  loss.backward();
  const gradTensors = leaves.filter((l) => l.requiresGrad).map((l) => l.grad!);
  // Numeric gradients: every perturbed loss recorded, then one readback.
  const perturbed: Tensor[] = tidy(() => {
    const losses: Tensor[] = [];
    inputs.forEach((inp, i) => {
      if ((inp.dtype ?? "f32") !== "f32") return;
      for (let j = 0; j < inp.data.length; j++) {
        for (const sgn of [1, -1]) {
          const d = Float32Array.from(inp.data);
          d[j] += sgn * eps;
          const xs = inputs.map((other, k) => (k === i ? make(d, k) : make(other.data, k)));
          losses.push(fn(...xs).mul(w).sum());
        }
      }
    });
    return losses;
  });
  const values = await readMany([...gradTensors, ...perturbed]);
  const analytic = values.slice(0, gradTensors.length);
  const lossValues = values.slice(gradTensors.length).map((v) => v[0]);
  let at = 0;
  let g = 0;
  inputs.forEach((inp, i) => {
    if ((inp.dtype ?? "f32") !== "f32") return;
    const numeric = new Float32Array(inp.data.length);
    for (let j = 0; j < inp.data.length; j++) {
      numeric[j] = (lossValues[at] - lossValues[at + 1]) / (2 * eps);
      at += 2;
    }
    assertClose(analytic[g++], numeric, atol, rtol, `${name}: d/dinput${i}`);
  });
  for (const t of [...leaves, out, w, loss, ...perturbed, ...gradTensors]) t.dispose();
}

/** Writes a synthetic Ding-format de-en dictionary: 96 sentence pairs (subject, verb, object). */
export async function writeDictionary(path: string): Promise<void> {
  const subjects = [
    ["Der Mann", "The man"],
    ["Die Frau", "The woman"],
    ["Das Kind", "The child"],
    ["Der Lehrer", "The teacher"],
    ["Die Katze", "The cat"],
    ["Der Hund", "The dog"],
  ];
  const verbs = [["sieht", "sees"], ["mag", "likes"], ["findet", "finds"], ["malt", "paints"]];
  const objects = [
    ["das rote Haus", "the red house"],
    ["den alten Baum", "the old tree"],
    ["ein kleines Auto", "a small car"],
    ["die neue Schule", "the new school"],
  ];
  const lines = subjects.flatMap(([sd, se]) =>
    verbs.flatMap(([vd, ve]) =>
      objects.map(([od, oe]) => `x | ${sd} ${vd} ${od}. :: x | ${se} ${ve} ${oe}.`)
    )
  );
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
}

/** How {@link cliProcess} interrupts its run. */
export interface CliStop {
  /** Polled every 20 ms with the output so far: true sends the signal (once). */
  when: (output: string) => boolean | Promise<boolean>;
  /** The signal (SIGINT: Ctrl-C; SIGKILL: a crash). */
  signal: Deno.Signal;
}

/**
 * Runs `deno run -A cli.ts ...args` in a subprocess on the CPU backend with one worker thread
 * (also under `test:webgpu`: a resumed run must use the backend of the run it continues, and its
 * `--resume` command line names none), optionally interrupted by `stop`; returns its exit code
 * and its stdout and stderr.
 */
export async function cliProcess(
  args: string[],
  stop?: CliStop,
): Promise<{ code: number; text: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli.ts", ...args],
    cwd: new URL("..", import.meta.url),
    env: { AUTOLOSS_BACKEND: "cpu", AUTOLOSS_THREADS: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const err = new Response(child.stderr).text();
  const read = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) text += chunk;
  })();
  let running = true;
  const poll = (async () => {
    while (stop && running) {
      if (await stop.when(text)) {
        child.kill(stop.signal);
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const { code } = await child.status;
  running = false;
  await Promise.all([read, poll]);
  return { code, text: text + (await err) };
}

/**
 * `--set` pairs of a tiny NMT run on the synthetic dictionary at `dictionary` (see
 * {@link writeDictionary}): 96 pairs, 20 BPE merges, 8-unit networks, batches of 4; `more` are
 * added (e.g. `train.batches=8`).
 */
export function tinyNmtSets(dictionary: string, ...more: string[]): string[] {
  return [
    `data.path=${dictionary}`,
    "data.limit=96",
    "data.srcMerges=20",
    "data.tgtMerges=20",
    "data.auxValLimit=8",
    "model.emb=8",
    "model.hidden=8",
    "model.decoderHidden=8",
    "train.batch=4",
    "train.evalBatch=8",
    "decode.beam=2",
    "decode.batch=8",
    ...more,
  ].flatMap((kv) => ["--set", kv]);
}
