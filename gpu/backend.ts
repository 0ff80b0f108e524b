/**
 * The narrow backend interface everything above `gpu/` goes through (allocate, write, run a
 * kernel described by a {@link KernelSpec}, copy, read), and the choice of backend:
 *
 * - WebGPU (gpu/webgpu/): WGSL compute shaders on a hardware GPU adapter;
 * - CPU (gpu/cpu/): JavaScript and WebAssembly SIMD kernels over one shared
 *   `WebAssembly.Memory`, with worker threads for the large products.
 *
 * `init()` picks WebGPU when the adapter is a hardware GPU and the CPU backend when there is no
 * adapter or only a software fallback (llvmpipe, lavapipe): a software GPU is the slow way to use
 * a CPU. `init({ backend })`, the CLI's `--backend` and the `AUTOLOSS_BACKEND` environment
 * variable force either. Nothing above gpu/ sees a GPU buffer or a shader.
 * @module
 */

import { type DType, type KernelSpec, writtenBuffers } from "./kernel.ts";

/** See {@link Backend.setWriteHook}: a storage and the byte range `[from, to)` about to change. */
export type WriteHook = (storage: Storage, from: number, to: number) => void;

/**
 * Calls `hook` with each region `spec`'s kernel writes: the bound region of each written buffer,
 * narrowed to the span the optimizer kernels (adam, sgd, clipScale) update and to a map's block.
 */
export function reportWrites(hook: WriteHook, spec: KernelSpec, buffers: readonly BufferRef[]) {
  for (const i of writtenBuffers(spec, buffers.length)) {
    const b = buffers[i];
    let from = b.offset, to = b.offset + 4 * b.numel;
    if (spec.kind === "adam" || spec.kind === "sgd") {
      from = b.offset + 4 * spec.span.start;
      to = from + 4 * spec.span.n;
    } else if (spec.kind === "clipScale") {
      from = b.offset + 4 * spec.start;
      to = from + 4 * spec.n;
    } else if (spec.kind === "map" && spec.outOffset !== undefined) {
      from = b.offset + 4 * spec.outOffset;
      to = from + 4 * spec.shape.reduce((a, d) => a * d, 1);
    }
    hook(b.storage, from, to);
  }
}

/** A region of backend memory. Tensors hold these; their contents are the backend's business. */
export interface Storage {
  /** Unique id (used in cache keys). */
  readonly id: number;
  /** Usable size in bytes. */
  readonly bytes: number;
  /** Reference count: the storage goes back to the pool when it reaches 0. */
  refs: number;
}

/** A contiguous run of 4-byte elements inside a storage: what kernels bind. */
export interface BufferRef {
  /** The storage holding the elements. */
  storage: Storage;
  /** Byte offset of the first element (a multiple of {@link OFFSET_ALIGN} when non-zero). */
  offset: number;
  /** Number of 4-byte elements. */
  numel: number;
}

/**
 * A GPU-side gate: three u32 counts at a byte offset of a storage, written by earlier kernels.
 * The gated kernel runs when all three are non-zero and is skipped otherwise (WebGPU: an
 * indirect dispatch with those workgroup counts; CPU: a test of the counts).
 */
export interface Gate {
  /** The storage holding the counts. */
  storage: Storage;
  /** Byte offset of the first count. */
  offset: number;
}

/** The error thrown when a gated region's rules (see {@link Backend.beginGated}) are broken. */
export class GatedRegionError extends Error {
  /** Creates the error with its message. */
  constructor(message: string) {
    super(message);
    this.name = "GatedRegionError";
  }
}

/** Offset alignment of bound regions (WebGPU's minimum guaranteed storage offset alignment). */
export const OFFSET_ALIGN = 256;

/** The backends. */
export type BackendKind = "webgpu" | "cpu";

/** What a backend reports about itself (printed by `cli.ts info` and recorded in every run). */
export interface BackendInfo {
  /** Which backend. */
  kind: BackendKind;
  /** The device: the adapter description, or the CPU model and thread count. */
  device: string;
  /** Why this backend was chosen. */
  reason: string;
}

/** Counters a backend exposes (tests read `liveStorages` and `hostSyncs`). */
export interface BackendStats {
  /** Storages allocated and not yet released. */
  liveStorages: number;
  /** Bytes in live storages. */
  liveBytes: number;
  /** Kernels run (dispatches recorded) since start. */
  dispatches: number;
  /** Submits since start (WebGPU; 0 on the CPU). */
  submits: number;
  /** Host syncs (reads and explicit syncs) since start: each costs >= 10 ms on Deno's WebGPU. */
  hostSyncs: number;
  /** Kernels compiled (pipelines, generated functions) since start. */
  pipelines: number;
  /** Gated regions closed since start (see {@link Backend.beginGated}). */
  gatedRegions: number;
}

/** One kernel's entry in a profile: time and work summed over the calls with the same key. */
export interface ProfileEntry {
  /** Kernel family or op name. */
  name: string;
  /** The shape part of the kernel (what distinguishes calls of one family). */
  shape: string;
  /** Number of calls. */
  calls: number;
  /** Total milliseconds measured. */
  ms: number;
  /** Total floating-point operations (multiply-add = 2). */
  flops: number;
}

/** The interface every backend implements. nn/, rl/ and tasks/ never bypass it. */
export interface Backend {
  /** What and why. */
  readonly info: BackendInfo;
  /** Most storage buffers one kernel may bind (WebGPU: the device's per-stage limit). */
  readonly maxBindings: number;
  /** Allocates `bytes` of backend memory (refs = 1; contents undefined). */
  alloc(bytes: number): Storage;
  /** Writes host data into a storage at a byte offset (ordered with the recorded work). */
  write(storage: Storage, data: ArrayBufferView, offset?: number): void;
  /** Runs (records) a kernel over `buffers` (the order is the spec's family's). */
  run(spec: KernelSpec, buffers: readonly BufferRef[], gate?: Gate): void;
  /**
   * Opens a GATED REGION: every kernel run until {@link Backend.endGated} takes effect only when
   * the value at `flag` (one element of type `dtype`, usually written by earlier kernels) is
   * non-zero, with no host sync. WebGPU records the region's dispatches as indirect dispatches
   * and, at the region's end, one small kernel that sets their workgroup counts (theirs, or 0);
   * the CPU backend reads the flag (its kernels have all run) and skips the region's kernels.
   * Rules, checked with errors: regions do not nest; inside one there is no `copy`, `read`,
   * `sync` or gated `run` (the region gates them); host `write`s take effect regardless of the
   * flag and may not target a storage the region's kernels already bound.
   */
  beginGated(flag: BufferRef, dtype: DType): void;
  /** Closes the gated region opened by {@link Backend.beginGated}. */
  endGated(): void;
  /** Copies bytes between storages (ordered with the kernels). */
  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void;
  /** Reads several regions back in one round trip. */
  read(regions: { storage: Storage; offset: number; bytes: number }[]): Promise<ArrayBuffer[]>;
  /** Adds a reference to a storage. */
  retain(storage: Storage): void;
  /** Drops a reference; at zero the storage returns to the pool once no pending work uses it. */
  release(storage: Storage): void;
  /** Submits recorded work now (a no-op where work runs at once). */
  flush(): void;
  /** Waits until all submitted work has finished. */
  sync(): Promise<void>;
  /** Counters for tests and profiling. */
  readonly stats: BackendStats;
  /**
   * Starts collecting a per-kernel profile (clearing the last one), or stops and returns it
   * (await: GPU timestamps are read back). On WebGPU without timestamp queries the entries have
   * call counts and no times.
   */
  profile(on: true): void;
  /** Stops profiling; returns the entries, slowest first. */
  profile(on: false): Promise<ProfileEntry[]>;
  /**
   * Registers the function called with every storage region about to be written (by `write`, as
   * the destination of `copy`, or as a buffer region a kernel writes; byte range `[from, to)`),
   * before the write: the tensor layer computes pending fused tensors that read it there, so they
   * see the old contents.
   */
  setWriteHook(hook: WriteHook | null): void;
  /** Releases threads and devices (the process can exit); the backend is unusable afterwards. */
  close(): void;
}

/** A backend request: one of the backends, or automatic selection. */
export type BackendChoice = BackendKind | "auto";

/** Options of {@link init}. */
export interface InitOptions {
  /** Which backend (default: `AUTOLOSS_BACKEND`, else "auto"). */
  backend?: BackendChoice;
}

/** Reads an environment variable, or undefined when env access is not permitted. */
export function envGet(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** A bad backend request (a user error: the CLI prints it without a stack). */
export class BackendChoiceError extends Error {
  /** Marks the error as meant for the user. */
  readonly userFacing = true;
  /** Creates the error with its message. */
  constructor(message: string) {
    super(message);
    this.name = "BackendChoiceError";
  }
}

/** Parses a backend name from a flag or the environment. */
export function parseBackendChoice(value: string, source: string): BackendChoice {
  if (value === "auto" || value === "webgpu" || value === "cpu") return value;
  throw new BackendChoiceError(
    `${source}: unknown backend '${value}'; use webgpu, cpu or auto`,
  );
}

let backendPromise: Promise<Backend> | null = null;
let backendInstance: Backend | null = null;
let requested: BackendChoice | null = null;

async function create(choice: BackendChoice, source: string): Promise<Backend> {
  if (choice === "cpu") {
    const { CpuBackend } = await import("./cpu/backend.ts");
    return CpuBackend.create(`forced by ${source}`);
  }
  const { getAdapter, WebGPUBackend } = await import("./webgpu/backend.ts");
  if (choice === "webgpu") return WebGPUBackend.create(`forced by ${source}`);
  const adapter = await getAdapter();
  if (adapter && !(adapter.info.isFallbackAdapter ?? false)) {
    return WebGPUBackend.create(`hardware GPU adapter '${adapter.info.description}'`);
  }
  const { CpuBackend } = await import("./cpu/backend.ts");
  return CpuBackend.create(
    adapter
      ? `the only WebGPU adapter, '${adapter.info.description}', is a software fallback`
      : "no WebGPU adapter",
  );
}

/**
 * Initializes the backend (once per process; later calls return the same one). Call before
 * creating tensors: ops are synchronous and use {@link backend}.
 * @throws BackendChoiceError when a different backend than the one running is requested.
 */
export async function init(opts: InitOptions = {}): Promise<Backend> {
  const env = envGet("AUTOLOSS_BACKEND");
  const source = opts.backend ? "--backend" : env ? "AUTOLOSS_BACKEND" : "auto";
  const choice = opts.backend ?? (env ? parseBackendChoice(env, "AUTOLOSS_BACKEND") : "auto");
  if (backendPromise) {
    const be = await backendPromise;
    if (choice !== "auto" && choice !== be.info.kind && opts.backend) {
      throw new BackendChoiceError(
        `the ${be.info.kind} backend is already running in this process; ${choice} was requested`,
      );
    }
    return be;
  }
  requested = choice;
  backendPromise = create(choice, source);
  try {
    backendInstance = await backendPromise;
  } catch (err) {
    backendPromise = null;
    requested = null;
    throw err;
  }
  return backendInstance;
}

/** The backend requested at {@link init} ("auto" unless forced), or null before init. */
export function requestedBackend(): BackendChoice | null {
  return requested;
}

/**
 * The running backend. Tensor ops are synchronous (they only record work), so the backend must
 * have been initialized with `await init()` first.
 */
export function backend(): Backend {
  if (!backendInstance) {
    throw new Error("autoloss: the backend is not initialized. Call `await init()` first.");
  }
  return backendInstance;
}
