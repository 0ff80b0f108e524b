/**
 * The TensorFlow.js peer for our benchmarks: TF.js's WebGPU backend running in Deno on the same
 * adapter as autoloss (Deno's own `navigator.gpu`).
 *
 * Versions are pinned (latest on npm when written): `@tensorflow/tfjs-core@4.22.0`,
 * `@tensorflow/tfjs-backend-webgpu@4.22.0` and `@tensorflow/tfjs@4.22.0` (the backend's and the
 * union package's dependency on core is exactly 4.22.0, so all resolve to one core instance and
 * the backend registers into the engine we import).
 *
 * Deno notes (no patching of TF.js and no global shims are needed with Deno 2.9.6):
 * - Deno resolves these packages (which have no `exports` map) to their `main` entries, the Node
 *   CommonJS builds (`tf.env().platformName` is "node"; harmless). tfjs-core's Node build contains
 *   no gradient functions (TF.js registers them from `@tensorflow/tfjs-core/dist/
 *   register_all_gradients`, an ESM file whose extensionless relative imports Deno refuses to
 *   resolve), so `optimizer.minimize` fails with "gradient function not found for RealDiv". The
 *   fix is a side-effect import of the union package `@tensorflow/tfjs`, whose Node build inlines
 *   and registers all gradients (it also loads layers/converter/data and the CPU backend, and
 *   leaves WebGL unregistered outside a browser). On first download Deno warns that `core-js`'s
 *   lifecycle script did not run; TF.js does not need it.
 * - TF.js's `isWebGPUSupported()` only checks `globalThis.navigator.gpu`, which Deno provides, so
 *   no `window`/`WorkerGlobalScope` shim is needed.
 * - TF.js requests its own device with a subset of the adapter's limits (workgroup storage,
 *   workgroups per dimension, storage binding size, buffer size, workgroup size X, invocations).
 * - Mesa prints "XDG_RUNTIME_DIR is invalid" when it is unset; {@linkcode initTfjs} sets it to
 *   /tmp when it can.
 *
 * Fair timing: a workload's `step()` enqueues one operation and returns without waiting (TF.js
 * records dispatches and submits every `WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE` = 15 of them); `sync()`
 * flushes TF.js's pending command encoder and awaits `queue.onSubmittedWorkDone()`, which on Deno
 * costs ~11 ms even when the queue is empty (like a 16-byte `mapAsync`). The harness
 * (`bench/report.ts`) therefore runs R steps per sync; R is chosen per workload in its
 * `WORKLOADS` table. Results of each step are disposed at once, so GPU memory stays flat (TF.js
 * frees the buffers at its next submit).
 *
 * CPU forwarding: TF.js's WebGPU backend by default runs an op on its CPU backend when all its
 * inputs are small (< 1000 elements) and still CPU-resident. {@linkcode initTfjs} turns this off
 * by default (`WEBGPU_CPU_FORWARD=false`) so every op runs on the GPU; pass `cpuForward: true` to
 * measure TF.js's out-of-the-box behavior.
 * @module
 */

// Full pinned specifiers, as elsewhere in the project (no import map needed).
// deno-lint-ignore no-import-prefix
import * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
// Registers TF.js's gradient functions (see the module notes: tfjs-core's Node build has none).
// deno-lint-ignore no-import-prefix
import "npm:@tensorflow/tfjs@4.22.0";
// deno-lint-ignore no-import-prefix
import type { WebGPUBackend } from "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
// deno-lint-ignore no-import-prefix
import "npm:@tensorflow/tfjs-backend-webgpu@4.22.0";
import type { Implementation, WorkloadParams } from "./report.ts";

/** The exact npm versions this peer uses. */
export const TFJS_VERSIONS = {
  "@tensorflow/tfjs": "4.22.0",
  "@tensorflow/tfjs-core": "4.22.0",
  "@tensorflow/tfjs-backend-webgpu": "4.22.0",
} as const;

/** One benchmarkable TF.js workload. */
export interface TfjsWorkload {
  /** Enqueues one operation (one matmul, one elementwise op, one training step); does not wait. */
  step(): void;
  /** Resolves once every operation enqueued so far has finished on the GPU. */
  sync(): Promise<void>;
  /** Frees the workload's input tensors and variables. */
  dispose(): void;
}

/** Options for {@linkcode initTfjs}. */
export interface TfjsInitOptions {
  /** Keep TF.js's default CPU forwarding of small CPU-resident ops (default false: all on GPU). */
  cpuForward?: boolean;
}

let ready: Promise<void> | null = null;

/**
 * Selects TF.js's WebGPU backend (idempotent; the CPU-forwarding flag is applied on every call).
 * @throws Error when the WebGPU backend cannot be initialized (no adapter).
 */
export function initTfjs(opts: TfjsInitOptions = {}): Promise<void> {
  tf.env().set("WEBGPU_CPU_FORWARD", opts.cpuForward ?? false);
  if (!ready) {
    ready = (async () => {
      try {
        if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
      } catch {
        // without env permission Mesa only prints a warning
      }
      if (!("gpu" in navigator)) throw new Error("navigator.gpu is missing: no WebGPU in Deno");
      const ok = await tf.setBackend("webgpu");
      if (!ok || tf.getBackend() !== "webgpu") {
        throw new Error("TF.js could not initialize its webgpu backend (is there an adapter?)");
      }
      await tf.ready();
    })();
    ready.catch(() => {
      ready = null;
    });
  }
  return ready;
}

/** The active TF.js WebGPU backend; {@linkcode initTfjs} must have resolved. */
function backend(): WebGPUBackend {
  const b = tf.backend() as WebGPUBackend;
  if (tf.getBackend() !== "webgpu") throw new Error("call initTfjs() first");
  return b;
}

/**
 * Waits for all GPU work TF.js has enqueued: ends its open compute pass, submits its command
 * encoder, and awaits `queue.onSubmittedWorkDone()` (no data is read back).
 */
export async function tfjsSync(): Promise<void> {
  const b = backend();
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.submitQueue();
  await b.queue.onSubmittedWorkDone();
}

/** Deterministic pseudo-random normal tensor, uploaded to the GPU on first use. */
function randn(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.randomNormal(shape, 0, 1, "float32", seed), scale));
}

function workload(step: () => void, inputs: tf.Tensor[]): TfjsWorkload {
  return {
    step,
    sync: tfjsSync,
    dispose: () => tf.dispose(inputs),
  };
}

/**
 * A matmul workload: each `step()` computes `[m,k] x [k,n]` once and disposes the result.
 * FLOPs per step: `2*m*k*n`.
 */
export function tfjsMatmul(m: number, k: number, n: number): TfjsWorkload {
  const a = randn([m, k], 1);
  const b = randn([k, n], 2);
  return workload(() => tf.dispose(tf.matMul(a, b)), [a, b]);
}

/** The elementwise ops benchmarked. */
export type ElementwiseOp = "add" | "mul" | "exp";

/**
 * An elementwise workload over `size` floats: `a+b`, `a*b` or `exp(a)` per step.
 * Bytes moved per step: 12*size for add/mul, 8*size for exp.
 */
export function tfjsElementwise(op: ElementwiseOp, size: number): TfjsWorkload {
  const a = randn([size], 3, 0.5);
  const b = randn([size], 4, 0.5);
  const f = op === "add" ? () => tf.add(a, b) : op === "mul" ? () => tf.mul(a, b) : () => tf.exp(a);
  return workload(() => tf.dispose(f()), [a, b]);
}

/**
 * A reduction workload: `sum` of a `[rows, cols]` matrix over `axis` (0: down the columns,
 * giving `cols` sums; 1: along each row, giving `rows` sums). Bytes read per step: 4*rows*cols.
 */
export function tfjsReduce(axis: 0 | 1, rows: number, cols: number): TfjsWorkload {
  const x = randn([rows, cols], 5);
  return workload(() => tf.dispose(tf.sum(x, axis)), [x]);
}

/** Shape and optimizer settings for {@linkcode tfjsMlpStep}. */
export interface MlpOptions {
  /** Batch size (default 128). */
  batch?: number;
  /** Input features (default 100). */
  inDim?: number;
  /** Hidden units, ReLU (default 64). */
  hidden?: number;
  /** Outputs (default 1). */
  outDim?: number;
  /** Adam learning rate (default 1e-3). */
  lr?: number;
}

/** An MLP training workload; also exposes the current loss for sanity checks. */
export interface TfjsMlpWorkload extends TfjsWorkload {
  /** Computes the MSE loss on the fixed batch and reads it back (slow: one readback). */
  loss(): Promise<number>;
}

/**
 * An MLP training workload: each `step()` is one Adam step (forward, MSE loss, backward, update)
 * of `inDim -> hidden (relu) -> outDim` on a fixed random batch, via `optimizer.minimize`.
 */
export function tfjsMlpStep(opts: MlpOptions = {}): TfjsMlpWorkload {
  const batch = opts.batch ?? 128;
  const inDim = opts.inDim ?? 100;
  const hidden = opts.hidden ?? 64;
  const outDim = opts.outDim ?? 1;
  const x = randn([batch, inDim], 6);
  const y = randn([batch, outDim], 7);
  const param = (init: tf.Tensor): tf.Variable => {
    const v = tf.variable(init); // names are auto-generated, so several MLPs can coexist
    init.dispose();
    return v;
  };
  const w1 = param(randn([inDim, hidden], 8, Math.sqrt(2 / inDim)));
  const b1 = param(tf.zeros([hidden]));
  const w2 = param(randn([hidden, outDim], 9, Math.sqrt(1 / hidden)));
  const b2 = param(tf.zeros([outDim]));
  const vars = [w1, b1, w2, b2];
  const optimizer = tf.train.adam(opts.lr ?? 1e-3);
  const lossFn = (): tf.Scalar => {
    const h = tf.relu(tf.add(tf.matMul(x, w1), b1));
    const out = tf.add(tf.matMul(h, w2), b2);
    return tf.losses.meanSquaredError(y, out) as tf.Scalar;
  };
  return {
    step: () => {
      optimizer.minimize(lossFn, false, vars);
    },
    sync: tfjsSync,
    loss: async () => {
      const l = tf.tidy(lossFn);
      const v = (await l.data())[0];
      l.dispose();
      return v;
    },
    dispose: () => {
      optimizer.dispose();
      tf.dispose([x, y, ...vars]);
    },
  };
}

/** Builds the TF.js workload for a harness workload description. */
export function tfjsCreate(p: WorkloadParams): TfjsWorkload {
  switch (p.kind) {
    case "matmul":
      return tfjsMatmul(p.m, p.k, p.n);
    case "elementwise":
      return tfjsElementwise(p.op, p.size);
    case "reduce":
      return tfjsReduce(p.axis, p.rows, p.cols);
    case "mlp":
      return tfjsMlpStep(p);
  }
}

/** TF.js as a harness implementation (see `Implementation` in `bench/report.ts`). */
export const tfjsImplementation: Implementation = {
  name: "tfjs",
  init: async () => {
    await initTfjs();
  },
  create: tfjsCreate,
  memory: () => {
    const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
    return { tensors: m.numTensors, bytes: m.numBytesInGPU ?? m.numBytes };
  },
};
