/**
 * The CPU backend: kernels run on the host, at once, inside `run`. Elementwise, reduction,
 * indexing, convolution-layout, optimizer and RNG kernels are JavaScript generated per kernel spec
 * (gpu/cpu/codegen.ts, shapes baked in); matrix products run in generated WebAssembly SIMD
 * (gpu/cpu/gemm.ts), split over worker threads that share the one `WebAssembly.Memory`
 * (gpu/cpu/pool.ts). Reads are copies, so `read` and `sync` cost nothing like WebGPU's
 * >= 10 ms round trips (they are still counted as host syncs, which tests bound).
 * @module
 */

import type {
  Backend,
  BackendInfo,
  BackendStats,
  BufferRef,
  Gate,
  ProfileEntry,
  Storage,
} from "../backend.ts";
import { OFFSET_ALIGN } from "../backend.ts";
import {
  kernelFlops,
  kernelKey,
  kernelName,
  kernelShape,
  type KernelSpec,
  writtenBuffers,
} from "../kernel.ts";
import { compileKernel, type CpuKernel } from "./codegen.ts";
import { SharedMemory } from "./memory.ts";

/** A CPU storage: a block of the shared memory. */
interface CpuStorage extends Storage {
  /** Byte address of the block. */
  readonly ptr: number;
  /** Size class of the block (what goes back to the allocator). */
  readonly size: number;
}

/** A compiled kernel and what profiles report about it. */
interface Compiled {
  run: CpuKernel;
  name: string;
  shape: string;
  flops: number;
}

/** The CPU model name from /proc/cpuinfo, or "CPU" where it cannot be read. */
function cpuModel(): string {
  try {
    const text = Deno.readTextFileSync("/proc/cpuinfo");
    return /model name\s*:\s*(.+)/.exec(text)?.[1]?.trim() ?? "CPU";
  } catch {
    return "CPU";
  }
}

/** CPU implementation of {@link Backend}. Create with {@link CpuBackend.create}. */
export class CpuBackend implements Backend {
  /** What runs and why. */
  readonly info: BackendInfo;
  /** Counters. */
  readonly stats: BackendStats = {
    liveStorages: 0,
    liveBytes: 0,
    dispatches: 0,
    submits: 0,
    hostSyncs: 0,
    pipelines: 0,
  };
  /** The memory every kernel addresses. */
  readonly mem: SharedMemory;
  #nextId = 1;
  #kernels = new Map<string, Compiled>();
  #offsets = new Int32Array(8);
  #profile: Map<string, ProfileEntry> | null = null;
  #closed = false;
  #writeHook: ((storage: Storage) => void) | null = null;

  private constructor(mem: SharedMemory, info: BackendInfo) {
    this.mem = mem;
    this.info = info;
  }

  /** Creates the backend; `reason` says why the CPU was chosen. */
  static create(reason: string): Promise<CpuBackend> {
    const threads = 1;
    const mem = new SharedMemory();
    return Promise.resolve(
      new CpuBackend(mem, {
        kind: "cpu",
        device: `${cpuModel()}, ${threads} thread${threads === 1 ? "" : "s"}`,
        reason,
      }),
    );
  }

  #check(): void {
    if (this.#closed) throw new Error("the CPU backend was closed");
  }

  alloc(bytes: number): Storage {
    this.#check();
    const { ptr, size } = this.mem.alloc(bytes);
    this.stats.liveStorages++;
    this.stats.liveBytes += bytes;
    const s: CpuStorage = { id: this.#nextId++, bytes, refs: 1, ptr, size };
    return s;
  }

  setWriteHook(hook: ((storage: Storage) => void) | null): void {
    this.#writeHook = hook;
  }

  write(storage: Storage, data: ArrayBufferView, offset = 0): void {
    this.#writeHook?.(storage);
    const s = storage as CpuStorage;
    if (offset + data.byteLength > s.bytes) {
      throw new RangeError(
        `write of ${data.byteLength} bytes at offset ${offset} overflows a ${s.bytes}-byte storage`,
      );
    }
    const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.mem.views.B.set(src, s.ptr + offset);
  }

  #compiled(spec: KernelSpec): Compiled {
    const key = kernelKey(spec);
    let c = this.#kernels.get(key);
    if (c) return c;
    c = {
      run: compileKernel(spec),
      name: kernelName(spec),
      shape: kernelShape(spec),
      flops: kernelFlops(spec),
    };
    this.stats.pipelines++;
    if (this.#kernels.size > 16384) this.#kernels.clear();
    this.#kernels.set(key, c);
    return c;
  }

  run(spec: KernelSpec, buffers: readonly BufferRef[], gate?: Gate): void {
    this.#check();
    const hook = this.#writeHook;
    if (hook) { for (const i of writtenBuffers(spec, buffers.length)) hook(buffers[i].storage); }
    const c = this.#compiled(spec);
    if (buffers.length > this.#offsets.length) this.#offsets = new Int32Array(buffers.length);
    const o = this.#offsets;
    for (let i = 0; i < buffers.length; i++) {
      const b = buffers[i];
      const s = b.storage as CpuStorage;
      if (s.refs <= 0) throw new Error(`kernel '${c.name}': a bound storage was released`);
      if (b.offset % OFFSET_ALIGN !== 0 || b.offset + b.numel * 4 > s.bytes + 3) {
        throw new Error(
          `kernel '${c.name}': binding of ${b.numel} elements at byte ${b.offset} does not fit ` +
            `a ${s.bytes}-byte storage (or is not ${OFFSET_ALIGN}-aligned)`,
        );
      }
      o[i] = (s.ptr + b.offset) >>> 2;
    }
    const v = this.mem.views;
    if (gate) {
      const g = ((gate.storage as CpuStorage).ptr + gate.offset) >>> 2;
      if (v.U[g] === 0 || v.U[g + 1] === 0 || v.U[g + 2] === 0) return;
    }
    this.stats.dispatches++;
    if (this.#profile) {
      const t0 = performance.now();
      c.run(v.F, v.I, v.U, o);
      this.#record(c, performance.now() - t0);
    } else {
      c.run(v.F, v.I, v.U, o);
    }
  }

  #record(c: Compiled, ms: number): void {
    const key = `${c.name}|${c.shape}`;
    let e = this.#profile!.get(key);
    if (!e) {
      this.#profile!.set(key, e = { name: c.name, shape: c.shape, calls: 0, ms: 0, flops: 0 });
    }
    e.calls++;
    e.ms += ms;
    e.flops += c.flops;
  }

  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void {
    this.#check();
    this.#writeHook?.(dst);
    const s = src as CpuStorage;
    const d = dst as CpuStorage;
    if (srcOffset + bytes > s.bytes || dstOffset + bytes > d.bytes) {
      throw new RangeError(`copy of ${bytes} bytes overflows a storage`);
    }
    const B = this.mem.views.B;
    B.copyWithin(d.ptr + dstOffset, s.ptr + srcOffset, s.ptr + srcOffset + bytes);
  }

  read(regions: { storage: Storage; offset: number; bytes: number }[]): Promise<ArrayBuffer[]> {
    this.#check();
    this.stats.hostSyncs++;
    const B = this.mem.views.B;
    return Promise.resolve(regions.map((r) => {
      const at = (r.storage as CpuStorage).ptr + r.offset;
      const out = new Uint8Array(r.bytes);
      out.set(B.subarray(at, at + r.bytes));
      return out.buffer;
    }));
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
      const s = storage as CpuStorage;
      this.mem.free(s.ptr, s.size);
    }
  }

  flush(): void {}

  sync(): Promise<void> {
    this.stats.hostSyncs++;
    return Promise.resolve();
  }

  profile(on: true): void;
  profile(on: false): Promise<ProfileEntry[]>;
  profile(on: boolean): void | Promise<ProfileEntry[]> {
    if (on) {
      this.#profile = new Map();
      return;
    }
    const entries = [...(this.#profile?.values() ?? [])];
    this.#profile = null;
    return Promise.resolve(entries.sort((a, b) => b.ms - a.ms || b.calls - a.calls));
  }

  close(): void {
    this.#closed = true;
  }
}
