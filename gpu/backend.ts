/**
 * The narrow backend interface that everything above `gpu/` goes through (allocate, write, read,
 * run a kernel), and its WebGPU implementation.
 *
 * Runtime discipline (see docs/architecture.md):
 * - Dispatches are recorded into one open compute pass and submitted at a sync point (a read,
 *   an explicit `flush()`, or every `SUBMIT_EVERY` dispatches). Nothing here awaits except `read`.
 * - Pipelines are cached by shader text; bind groups by (pipeline, buffers, offsets).
 * - Buffers come from a size-bucketed pool and return to it only after the submit that used them.
 * - `read` packs several storages into one staging buffer and one `mapAsync`.
 * @module
 */

import { checkDeviceLost, getDevice } from "./device.ts";

/** A region of GPU memory owned by the backend. Tensors hold these; never touch `buffer` above gpu/. */
export interface Storage {
  /** Unique id (used in bind-group cache keys). */
  readonly id: number;
  /** Usable size in bytes (the underlying buffer may be larger). */
  readonly bytes: number;
  /** Underlying GPU buffer. */
  readonly buffer: GPUBuffer;
  /** Reference count: the storage goes back to the pool when it reaches 0. */
  refs: number;
}

/** How a kernel uses one of its buffers. */
export type Access = "read" | "read_write";

/** One buffer binding of a kernel: a storage, an optional byte offset/size, and its access. */
export interface Binding {
  /** The storage bound. */
  storage: Storage;
  /** Byte offset into the storage (must be a multiple of the device's offset alignment, 256). */
  offset?: number;
  /** Bytes bound; defaults to the rest of the storage. */
  size?: number;
  /** "read" binds as read-only storage; "read_write" as writable storage. */
  access: Access;
}

/** A compiled-on-demand compute kernel: WGSL text whose bindings are @group(0) @binding(i). */
export interface Kernel {
  /** Full WGSL source with entry point `main`. */
  code: string;
  /** Short name for error messages and profiling. */
  name: string;
}

/** Dispatch size: a direct workgroup count, or an indirect-args storage (3 x u32 at offset). */
export type Grid = [number, number, number] | { indirect: Storage; offset: number };

/** The interface every backend implements. nn/, rl/ and tasks/ never bypass it. */
export interface Backend {
  /** Allocates `bytes` of device memory (refs = 1). */
  alloc(bytes: number): Storage;
  /** Writes host data into a storage at a byte offset (ordered with the recorded work). */
  write(storage: Storage, data: ArrayBufferView, offset?: number): void;
  /** Records a kernel dispatch with the given bindings. */
  run(kernel: Kernel, bindings: Binding[], grid: Grid): void;
  /** Copies bytes between storages (recorded in order with dispatches). */
  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void;
  /** Reads several regions back in one round trip. */
  read(regions: { storage: Storage; offset: number; bytes: number }[]): Promise<ArrayBuffer[]>;
  /** Adds a reference to a storage. */
  retain(storage: Storage): void;
  /** Drops a reference; at zero the storage returns to the pool after the next submit. */
  release(storage: Storage): void;
  /** Submits recorded work now. */
  flush(): void;
  /** Waits until the GPU has finished all submitted work (costs >= 10 ms in Deno). */
  sync(): Promise<void>;
  /** Counters for tests and profiling. */
  readonly stats: BackendStats;
}

/** Counters a backend exposes (tests read `liveStorages` and `hostSyncs`). */
export interface BackendStats {
  /** Storages allocated and not yet released. */
  liveStorages: number;
  /** Bytes in live storages. */
  liveBytes: number;
  /** Dispatches recorded since start. */
  dispatches: number;
  /** Submits since start. */
  submits: number;
  /** Host syncs (reads and explicit syncs) since start: each costs >= 10 ms in Deno. */
  hostSyncs: number;
  /** Pipelines compiled since start. */
  pipelines: number;
}

/** Submit automatically after this many recorded dispatches. */
const SUBMIT_EVERY = 128;
/** Offset alignment for storage bindings (WebGPU's minimum guaranteed value). */
export const OFFSET_ALIGN = 256;

/** Rounds a byte count up to the pool's size class. */
function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  // Above 4 KiB: 8 classes per power of two (at most 12.5% waste).
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 8;
  return Math.ceil(b / step) * step;
}

/** Bytes a binding covers: its explicit size, or the rest of the storage (rounded up to 4). */
function bindingSize(b: Binding): number {
  return b.size ?? ((b.storage.bytes - (b.offset ?? 0) + 3) & ~3);
}

/** Formats WGSL with line numbers for error messages. */
export function numberLines(code: string): string {
  return code.split("\n").map((l, i) => `${String(i + 1).padStart(4)}| ${l}`).join("\n");
}

/** WebGPU implementation of {@link Backend}. Create with {@link WebGPUBackend.create}. */
export class WebGPUBackend implements Backend {
  /** The device in use. */
  readonly device: GPUDevice;
  /** Counters. */
  readonly stats: BackendStats = {
    liveStorages: 0,
    liveBytes: 0,
    dispatches: 0,
    submits: 0,
    hostSyncs: 0,
    pipelines: 0,
  };
  #nextId = 1;
  #pool = new Map<number, GPUBuffer[]>();
  #pending: GPUBuffer[] = [];
  #pipelines = new Map<string, GPUComputePipeline>();
  #pipelineIds = new WeakMap<GPUComputePipeline, number>();
  #bindGroups = new Map<string, GPUBindGroup>();
  #bufferIds = new WeakMap<GPUBuffer, number>();
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #sinceSubmit = 0;
  #usedInEncoder = new Set<GPUBuffer>();
  #error: Error | null = null;

  #lost: Promise<never>;

  private constructor(device: GPUDevice) {
    this.device = device;
    // A lost device must turn pending reads into errors, never into a hang.
    this.#lost = device.lost.then((info) => {
      throw new Error(
        `The WebGPU device was lost (${info.reason}: ${info.message}). Restart the process; ` +
          "if it recurs, lower the batch size or check the GPU driver.",
      );
    });
    this.#lost.catch(() => {});
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.#error ??= new Error(`WebGPU error: ${e.message}`);
    });
  }

  /** Acquires the shared device and wraps it. */
  static async create(): Promise<WebGPUBackend> {
    const { device } = await getDevice();
    return new WebGPUBackend(device);
  }

  #checkErrors(): void {
    checkDeviceLost();
    if (this.#error) {
      const e = this.#error;
      this.#error = null;
      throw e;
    }
  }

  alloc(bytes: number): Storage {
    const size = sizeClass(bytes);
    const free = this.#pool.get(size);
    let buffer = free?.pop();
    if (!buffer) {
      buffer = this.device.createBuffer({
        size,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST |
          GPUBufferUsage.INDIRECT,
      });
      this.#bufferIds.set(buffer, this.#nextId++);
    }
    this.stats.liveStorages++;
    this.stats.liveBytes += bytes;
    return { id: this.#bufferIds.get(buffer)!, bytes, buffer, refs: 1 };
  }

  write(storage: Storage, data: ArrayBufferView, offset = 0): void {
    if (offset + data.byteLength > storage.bytes) {
      throw new RangeError(
        `write of ${data.byteLength} bytes at offset ${offset} overflows a ${storage.bytes}-byte storage`,
      );
    }
    // queue.writeBuffer is ordered before the next submit; work already recorded into the open
    // encoder that touches this storage must be submitted first, or it would see the new data.
    if (this.#usedInEncoder.has(storage.buffer)) this.flush();
    const pad = data.byteLength % 4;
    if (pad === 0) {
      this.device.queue.writeBuffer(
        storage.buffer,
        offset,
        data.buffer as ArrayBuffer,
        data.byteOffset,
        data.byteLength,
      );
    } else {
      const tmp = new Uint8Array(data.byteLength + 4 - pad);
      tmp.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(storage.buffer, offset, tmp);
    }
  }

  #pipeline(kernel: Kernel): GPUComputePipeline {
    let p = this.#pipelines.get(kernel.code);
    if (p) return p;
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code: kernel.code, label: kernel.name });
    p = this.device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label: kernel.name,
    });
    // Validation errors arrive asynchronously; report them with the numbered source.
    this.device.popErrorScope().then((err) => {
      if (err) {
        this.#error ??= new Error(
          `WGSL kernel '${kernel.name}' failed to compile:${err.message}\n--- source ---\n` +
            numberLines(kernel.code),
        );
      }
    });
    this.#pipelines.set(kernel.code, p);
    this.#pipelineIds.set(p, this.#pipelines.size);
    this.stats.pipelines++;
    return p;
  }

  #bindGroup(pipeline: GPUComputePipeline, bindings: Binding[]): GPUBindGroup {
    let key = `${this.#pipelineIds.get(pipeline)}`;
    for (const b of bindings) key += `|${b.storage.id}:${b.offset ?? 0}:${bindingSize(b)}`;
    let bg = this.#bindGroups.get(key);
    if (bg) return bg;
    bg = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: bindings.map((b, i) => ({
        binding: i,
        resource: {
          buffer: b.storage.buffer,
          offset: b.offset ?? 0,
          size: bindingSize(b),
        },
      })),
    });
    if (this.#bindGroups.size > 8192) this.#bindGroups.clear();
    this.#bindGroups.set(key, bg);
    return bg;
  }

  #openPass(): GPUComputePassEncoder {
    if (!this.#pass) {
      this.#encoder ??= this.device.createCommandEncoder();
      this.#pass = this.#encoder.beginComputePass();
    }
    return this.#pass;
  }

  run(kernel: Kernel, bindings: Binding[], grid: Grid): void {
    this.#checkErrors();
    for (const b of bindings) {
      if (b.storage.refs <= 0) {
        throw new Error(`kernel '${kernel.name}': a bound storage was released`);
      }
      if ((b.offset ?? 0) % OFFSET_ALIGN !== 0) {
        throw new Error(
          `kernel '${kernel.name}': binding offset ${b.offset} is not ${OFFSET_ALIGN}-aligned`,
        );
      }
    }
    if (Array.isArray(grid) && grid[0] * grid[1] * grid[2] === 0) return;
    const pipeline = this.#pipeline(kernel);
    for (const b of bindings) this.#usedInEncoder.add(b.storage.buffer);
    const bg = this.#bindGroup(pipeline, bindings);
    const pass = this.#openPass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    if (Array.isArray(grid)) {
      pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
    } else {
      this.#usedInEncoder.add(grid.indirect.buffer);
      pass.dispatchWorkgroupsIndirect(grid.indirect.buffer, grid.offset);
    }
    this.stats.dispatches++;
    if (++this.#sinceSubmit >= SUBMIT_EVERY) this.flush();
  }

  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void {
    this.#checkErrors();
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
    this.#encoder ??= this.device.createCommandEncoder();
    this.#encoder.copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes);
    this.#usedInEncoder.add(src.buffer).add(dst.buffer);
  }

  flush(): void {
    if (this.#encoder) {
      if (this.#pass) {
        this.#pass.end();
        this.#pass = null;
      }
      this.device.queue.submit([this.#encoder.finish()]);
      this.#encoder = null;
      this.#sinceSubmit = 0;
      this.#usedInEncoder.clear();
      this.stats.submits++;
    }
    // Buffers released before this submit may now be reused by later work.
    for (const b of this.#pending) {
      const list = this.#pool.get(b.size);
      if (list) list.push(b);
      else this.#pool.set(b.size, [b]);
    }
    this.#pending = [];
  }

  async read(
    regions: { storage: Storage; offset: number; bytes: number }[],
  ): Promise<ArrayBuffer[]> {
    this.#checkErrors();
    let total = 0;
    const starts: number[] = [];
    for (const r of regions) {
      starts.push(total);
      total += Math.ceil(r.bytes / 4) * 4;
    }
    const staging = this.device.createBuffer({
      size: Math.max(4, total),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
    this.#encoder ??= this.device.createCommandEncoder();
    regions.forEach((r, i) => {
      const n = Math.ceil(r.bytes / 4) * 4;
      if (n > 0) {
        this.#encoder!.copyBufferToBuffer(r.storage.buffer, r.offset, staging, starts[i], n);
      }
    });
    this.flush();
    this.stats.hostSyncs++;
    await this.#waitFor(staging.mapAsync(GPUMapMode.READ));
    const all = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    this.#checkErrors();
    return regions.map((r, i) => all.slice(starts[i], starts[i] + r.bytes));
  }

  /** Awaits `p`, turning a lost device into a clear error instead of a hang or a vague one. */
  async #waitFor(p: Promise<unknown>): Promise<void> {
    try {
      await Promise.race([p, this.#lost]);
    } catch (err) {
      await new Promise((r) => setTimeout(r, 0));
      checkDeviceLost();
      throw err;
    }
  }

  async sync(): Promise<void> {
    this.flush();
    this.stats.hostSyncs++;
    await this.#waitFor(this.device.queue.onSubmittedWorkDone());
    this.#checkErrors();
  }

  retain(storage: Storage): void {
    if (storage.refs <= 0) throw new Error("retain() of a released storage");
    storage.refs++;
  }

  release(storage: Storage): void {
    if (storage.refs <= 0) return;
    if (--storage.refs === 0) {
      this.stats.liveStorages--;
      this.stats.liveBytes -= storage.bytes;
      this.#pending.push(storage.buffer);
      if (!this.#encoder) this.flush();
    }
  }
}

let backendPromise: Promise<WebGPUBackend> | null = null;
let backendInstance: WebGPUBackend | null = null;

/**
 * Initializes the default backend (acquires the GPU). Call once before creating tensors; tensor
 * factories call it implicitly through {@link backend} after {@link init} resolved.
 */
export async function init(): Promise<WebGPUBackend> {
  backendPromise ??= WebGPUBackend.create();
  backendInstance = await backendPromise;
  return backendInstance;
}

/**
 * The default backend. Tensor ops are synchronous (they only record work), so the backend must
 * have been initialized with `await init()` first.
 */
export function backend(): WebGPUBackend {
  if (!backendInstance) {
    throw new Error("autoloss: the GPU backend is not initialized. Call `await init()` first.");
  }
  return backendInstance;
}
