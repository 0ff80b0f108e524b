/**
 * The benchmark contract shared by the TF.js peer (bench/report.ts) and the workloads that do not
 * need TF.js (bench/mlp_step.ts): kept apart so that importing a type does not pull TF.js into a
 * module graph (and into the lockfile).
 * @module
 */

/** What a workload computes; implementations switch on `kind`. */
export type WorkloadParams =
  | { kind: "matmul"; m: number; k: number; n: number }
  | { kind: "elementwise"; op: "add" | "mul" | "exp"; size: number }
  | { kind: "reduce"; op: "sum"; axis: 0 | 1; rows: number; cols: number }
  | {
    kind: "mlp";
    batch: number;
    inDim: number;
    hidden: number;
    outDim: number;
    lr: number;
  };

/** One row of the benchmark table. */
export interface WorkloadSpec {
  /** Short unique id, also the bench name suffix, e.g. "matmul 256". */
  id: string;
  /** `Deno.bench` group; implementations of the same workload share it. */
  group: string;
  /** The computation. */
  params: WorkloadParams;
  /** R: operations per iteration, between two GPU waits. */
  reps: number;
  /** `n` for `Deno.bench` (iterations; deno also runs at least ~0.5 s of them). */
  benchN: number;
}

/** An instantiated workload of one implementation. */
export interface Workload {
  /** Enqueues one operation; must not wait for the GPU. May return a promise (it is awaited). */
  step(): void | Promise<void>;
  /** Resolves once every operation enqueued so far has completed on the GPU. */
  sync(): Promise<void>;
  /** Frees the workload's inputs/parameters. */
  dispose(): void;
}

/** A contender in the benchmarks: a name and a workload factory. */
export interface Implementation {
  /** Column name, e.g. "tfjs" or "autoloss". */
  name: string;
  /** Acquires the device / selects the backend; called once before any `create`. */
  init(): Promise<void>;
  /** Builds the workload (inputs uploaded or scheduled for upload). */
  create(params: WorkloadParams): Workload | Promise<Workload>;
  /** Optional live-memory probe, used to check that memory stays flat across iterations. */
  memory?(): { tensors: number; bytes: number };
}
