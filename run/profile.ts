/**
 * The kernel profiler behind `cli.ts profile <task>`: runs a task's training step a few times to
 * warm up (kernels compile on first use), times `steps` steps end to end, then runs them again
 * with the backend's per-kernel profile on (CPU: a timer around each kernel; WebGPU: timestamp
 * queries around each dispatch, where the adapter offers them) and prints per kernel and shape:
 * calls per step, milliseconds per step, share of the step and GFLOP/s.
 *
 * The end-to-end time is measured without profiling (WebGPU profiling puts each dispatch in its
 * own pass, which changes what it measures); the per-kernel times come from the second pass.
 * @module
 */

import { backend, type ProfileEntry } from "../gpu/backend.ts";
import { atomicWrite } from "../util/atomic.ts";

/** One task's step, as the profiler runs it. */
export interface ProfileWorkload {
  /** What one step is (printed above the table). */
  description: string;
  /** Records training step `i` (no host sync inside). */
  step(i: number): void;
  /** Frees everything the workload holds. */
  dispose(): void;
}

/** Options of {@link profileWorkload}. */
export interface ProfileOptions {
  /** Untimed steps first (default 3). */
  warmup?: number;
  /** Timed (and then profiled) steps (default 10). */
  steps?: number;
}

/** What {@link profileWorkload} measured. */
export interface ProfileReport {
  /** The workload's description. */
  description: string;
  /** Backend kind, device and why it was chosen. */
  backend: { kind: string; device: string; reason: string };
  /** Steps timed. */
  steps: number;
  /** Mean wall milliseconds per step over the timed steps (each step ends with a sync). */
  msPerStep: number;
  /** Kernels per step. */
  dispatchesPerStep: number;
  /** Host syncs per step inside the timed steps (the final sync of each step excluded). */
  hostSyncsPerStep: number;
  /** Milliseconds per step that the profiled kernels account for. */
  kernelMsPerStep: number;
  /** Per kernel and shape, slowest first. */
  kernels: (ProfileEntry & { callsPerStep: number; msPerStep: number; gflops: number })[];
}

/** Runs `w` and returns its profile. */
export async function profileWorkload(
  w: ProfileWorkload,
  opts: ProfileOptions = {},
): Promise<ProfileReport> {
  const warmup = opts.warmup ?? 3;
  const steps = opts.steps ?? 10;
  if (!Number.isInteger(steps) || steps < 1 || !Number.isInteger(warmup) || warmup < 0) {
    throw new Error(`profile: steps must be >= 1 and warmup >= 0, got ${steps} and ${warmup}`);
  }
  const be = backend();
  let i = 0;
  for (; i < warmup; i++) w.step(i);
  await be.sync();
  const times: number[] = [];
  const d0 = be.stats.dispatches;
  const s0 = be.stats.hostSyncs;
  for (let k = 0; k < steps; k++, i++) {
    const t0 = performance.now();
    w.step(i);
    await be.sync();
    times.push(performance.now() - t0);
  }
  const dispatches = (be.stats.dispatches - d0) / steps;
  const syncs = (be.stats.hostSyncs - s0) / steps - 1;
  be.profile(true);
  for (let k = 0; k < steps; k++, i++) w.step(i);
  const entries = await be.profile(false);
  const kernelMs = entries.reduce((a, e) => a + e.ms, 0) / steps;
  return {
    description: w.description,
    backend: { ...be.info },
    steps,
    msPerStep: times.reduce((a, b) => a + b, 0) / times.length,
    dispatchesPerStep: dispatches,
    hostSyncsPerStep: syncs,
    kernelMsPerStep: kernelMs,
    kernels: entries.map((e) => ({
      ...e,
      callsPerStep: e.calls / steps,
      msPerStep: e.ms / steps,
      gflops: e.ms > 0 ? e.flops / e.ms / 1e6 : 0,
    })),
  };
}

/** The report as text: a header and a table of the `top` slowest kernels. */
export function formatProfile(r: ProfileReport, top = 25): string {
  const pct = (ms: number) =>
    r.kernelMsPerStep > 0 ? `${(100 * ms / r.kernelMsPerStep).toFixed(1)}%` : "-";
  const rows = r.kernels.slice(0, top).map((k) => [
    k.name,
    k.shape,
    String(Number(k.callsPerStep.toFixed(2))),
    k.msPerStep.toFixed(3),
    pct(k.msPerStep),
    k.gflops > 0 ? k.gflops.toFixed(2) : "",
  ]);
  const head = ["kernel", "shape", "calls/step", "ms/step", "share", "GFLOP/s"];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]) =>
    cells.map((s, c) => (c < 2 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join("  ");
  const rest = r.kernels.length - rows.length;
  return [
    r.description,
    `backend: ${r.backend.kind} (${r.backend.reason}); device: ${r.backend.device}`,
    `step: ${r.msPerStep.toFixed(1)} ms (mean of ${r.steps}), ${r.dispatchesPerStep} kernels, ` +
    `${r.hostSyncsPerStep} host syncs inside; kernels account for ${
      r.kernelMsPerStep.toFixed(1)
    } ms` + (r.kernelMsPerStep === 0 ? " (no timestamps on this adapter)" : ""),
    "",
    line(head),
    line(widths.map((w) => "-".repeat(w))),
    ...rows.map(line),
    ...(rest > 0 ? [`... and ${rest} more kernels`] : []),
  ].join("\n");
}

/** Writes the report as JSON (atomically). */
export async function writeProfile(path: string, r: ProfileReport): Promise<void> {
  await atomicWrite(path, JSON.stringify(r, null, 2) + "\n");
}
