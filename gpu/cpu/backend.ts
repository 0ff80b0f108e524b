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
import {
  BackendChoiceError,
  GatedRegionError,
  OFFSET_ALIGN,
  reportWrites,
  type WriteHook,
} from "../backend.ts";
import {
  type DType,
  kernelFlops,
  kernelKey,
  kernelName,
  kernelShape,
  type KernelSpec,
} from "../kernel.ts";
import { envGet } from "../backend.ts";
import { compileKernel, type CpuKernel } from "./codegen.ts";
import { buildLstmStepModule, wasmLstmSupported } from "./wasm_lstm.ts";
import { buildCol2imModule, buildIm2colModule } from "./wasm_conv.ts";
import { buildAdamModule } from "./wasm_optim.ts";
import { buildMapModule, wasmMapSupported } from "./wasm_map.ts";
import { buildReduceModule, wasmReducePlan } from "./wasm_reduce.ts";
import { type GemmFn, gemmModule, gemmWorkBytes, relaxedSimdSupported } from "./gemm.ts";
import { SharedMemory } from "./memory.ts";
import { WorkerPool } from "./pool.ts";

/** Products with fewer floating-point operations than this run on one thread. */
const PARALLEL_FLOPS = 4e6;

/** Threads to use: `AUTOLOSS_THREADS`, else every core the runtime reports (at most 16). */
export function cpuThreads(): number {
  const env = envGet("AUTOLOSS_THREADS");
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1 || n > 256) {
      throw new BackendChoiceError(`AUTOLOSS_THREADS must be an integer in [1, 256], got '${env}'`);
    }
    return n;
  }
  return Math.min(16, Math.max(1, navigator.hardwareConcurrency || 1));
}

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
  /** Buffers a kernel may bind (no hardware limit; as many as a pack uses). */
  readonly maxBindings = 64;
  /** Counters. */
  readonly stats: BackendStats = {
    liveStorages: 0,
    liveBytes: 0,
    dispatches: 0,
    submits: 0,
    hostSyncs: 0,
    pipelines: 0,
    gatedRegions: 0,
  };
  /** The memory every kernel addresses. */
  readonly mem: SharedMemory;
  #nextId = 1;
  #kernels = new Map<string, Compiled>();
  #offsets = new Int32Array(8);
  #profile: Map<string, ProfileEntry> | null = null;
  #closed = false;
  #writeHook: WriteHook | null = null;
  /** The open gated region: whether its flag is on, and the storages its kernels bound. */
  #region: { on: boolean; used: Set<Storage> } | null = null;
  readonly #gemm: GemmFn;
  readonly #pool: WorkerPool;
  /** Byte address of each thread's gemm scratch. */
  readonly #work: number[];

  private constructor(
    mem: SharedMemory,
    info: BackendInfo,
    gemm: GemmFn,
    pool: WorkerPool,
    work: number[],
  ) {
    this.mem = mem;
    this.info = info;
    this.#gemm = gemm;
    this.#pool = pool;
    this.#work = work;
  }

  /** Creates the backend; `reason` says why the CPU was chosen. */
  static create(reason: string): Promise<CpuBackend> {
    const threads = cpuThreads();
    const mem = new SharedMemory();
    const relaxed = relaxedSimdSupported();
    const module = gemmModule({ relaxed });
    const instance = new WebAssembly.Instance(module, { env: { memory: mem.memory } });
    const bytes = gemmWorkBytes({ relaxed });
    const work = Array.from({ length: threads }, () => mem.alloc(bytes).ptr);
    const control = mem.alloc(WorkerPool.controlBytes(threads)).ptr;
    mem.views.B.fill(0, control, control + WorkerPool.controlBytes(threads));
    const pool = new WorkerPool(mem.memory, module, ["gemm"], threads, control);
    const simd = relaxed ? "WebAssembly SIMD with relaxed FMA" : "WebAssembly SIMD";
    return Promise.resolve(
      new CpuBackend(
        mem,
        {
          kind: "cpu",
          device: `${cpuModel()}, ${threads} thread${threads === 1 ? "" : "s"}, ${simd}`,
          reason,
        },
        instance.exports.gemm as GemmFn,
        pool,
        work,
      ),
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

  setWriteHook(hook: WriteHook | null): void {
    this.#writeHook = hook;
  }

  write(storage: Storage, data: ArrayBufferView, offset = 0): void {
    this.#writeHook?.(storage, offset, offset + data.byteLength);
    if (this.#region?.used.has(storage)) {
      throw new GatedRegionError(
        "a host write into a storage that kernels of the open gated region bind: the write " +
          "would land before them; write it before the region (beginGated) or after it",
      );
    }
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
      // Products run in WebAssembly (#matmul); maps in WebAssembly SIMD where it renders them;
      // everything else in generated JavaScript.
      run: spec.kind === "matmul"
        ? () => {}
        : spec.kind === "map" && wasmMapSupported(spec)
        ? this.#wasmKernel(buildMapModule(spec), spec.inputs.length + 1)
        : spec.kind === "reduce" && wasmReducePlan(spec)
        ? this.#wasmKernel(buildReduceModule(spec, wasmReducePlan(spec)!), spec.inputs.length + 1)
        : spec.kind === "pack"
        ? this.#pack(spec)
        : spec.kind === "adam"
        ? this.#adam(spec)
        : spec.kind === "im2col"
        ? this.#wasmKernel(buildIm2colModule(spec.g), 2)
        : spec.kind === "col2im"
        ? this.#wasmKernel(buildCol2imModule(spec.g), 2)
        : spec.kind === "lstmStep" && wasmLstmSupported(spec)
        ? this.#wasmKernel(
          buildLstmStepModule(spec),
          (spec.backward ? 7 : 4) + (spec.masked ? 1 : 0),
        )
        : compileKernel(spec),
      name: kernelName(spec),
      shape: kernelShape(spec),
      flops: kernelFlops(spec),
    };
    this.stats.pipelines++;
    if (this.#kernels.size > 16384) this.#kernels.clear();
    this.#kernels.set(key, c);
    return c;
  }

  /**
   * A pack: each part runs as the map it is (WebAssembly SIMD where that renders it), on the
   * buffers it binds, one after the other inside this one kernel.
   */
  #pack(spec: Extract<KernelSpec, { kind: "pack" }>): CpuKernel {
    const out = spec.buffers.length;
    const parts = spec.parts.map((p) => ({
      run: this.#compiled({
        kind: "map",
        expr: p.expr,
        shape: p.shape,
        inputs: p.inputs,
        out: spec.out,
        ...(p.outOffset ? { outOffset: p.outOffset } : {}),
      }).run,
      bind: [...p.bind, out],
      o: new Int32Array(p.bind.length + 1),
    }));
    return (F, I, U, o) => {
      for (const p of parts) {
        for (let k = 0; k < p.bind.length; k++) p.o[k] = o[p.bind[k]];
        p.run(F, I, U, p.o);
      }
    };
  }

  /**
   * The fused Adam update: the step's scalars from the hyperparameters and the step counter (read
   * here, in double precision), the elementwise update in WebAssembly SIMD.
   */
  #adam(spec: Extract<KernelSpec, { kind: "adam" }>): CpuKernel {
    const module = new WebAssembly.Module(buildAdamModule(spec.decay) as BufferSource);
    const k = new WebAssembly.Instance(module, { env: { memory: this.mem.memory } }).exports
      .k as (...args: number[]) => void;
    const { start, n, slot } = spec.span;
    return (F, _I, _U, o) => {
      const h = o[0];
      const t = F[o[1] + slot];
      const lr = F[h], wd = F[h + 4];
      const stepSize = lr / -Math.expm1(t * F[h + 7]);
      const root = Math.sqrt(-Math.expm1(t * F[h + 8]));
      const at = (i: number) => (o[i] + start) << 2;
      k(
        at(2),
        at(3),
        at(4),
        at(5),
        n,
        stepSize,
        root,
        F[h + 1],
        F[h + 2],
        F[h + 5],
        F[h + 6],
        F[h + 3],
        wd,
        lr * wd,
      );
    };
  }

  /** A WebAssembly kernel `k(byte addresses...)` as a {@link CpuKernel}. */
  #wasmKernel(bytes: Uint8Array, buffers: number): CpuKernel {
    const module = new WebAssembly.Module(bytes as BufferSource);
    const k = new WebAssembly.Instance(module, { env: { memory: this.mem.memory } }).exports
      .k as (...ptrs: number[]) => void;
    switch (buffers) {
      case 1:
        return (_F, _I, _U, o) => k(o[0] << 2);
      case 2:
        return (_F, _I, _U, o) => k(o[0] << 2, o[1] << 2);
      case 3:
        return (_F, _I, _U, o) => k(o[0] << 2, o[1] << 2, o[2] << 2);
      case 4:
        return (_F, _I, _U, o) => k(o[0] << 2, o[1] << 2, o[2] << 2, o[3] << 2);
      default:
        return (_F, _I, _U, o) => k(...Array.from(o.subarray(0, buffers), (v) => v << 2));
    }
  }

  run(spec: KernelSpec, buffers: readonly BufferRef[], gate?: Gate): void {
    this.#check();
    const hook = this.#writeHook;
    if (hook) reportWrites(hook, spec, buffers);
    const c = this.#compiled(spec);
    const region = this.#region;
    if (region) {
      if (gate) {
        throw new GatedRegionError(
          `kernel '${c.name}' has its own gate inside a gated region: the region gates it; ` +
            "run it without the gate",
        );
      }
      for (const b of buffers) region.used.add(b.storage);
      if (!region.on) return;
    }
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
    const t0 = this.#profile ? performance.now() : 0;
    if (spec.kind === "matmul") this.#matmul(spec, o);
    else c.run(v.F, v.I, v.U, o);
    if (this.#profile) this.#record(c, performance.now() - t0);
  }

  /**
   * A (batched) product in WebAssembly: per batch one gemm call, split over the threads by
   * columns (each thread packs only its columns of B) or, for tall products, by rows.
   */
  #matmul(spec: Extract<KernelSpec, { kind: "matmul" }>, o: Int32Array): void {
    const { m, n, k } = spec;
    const [sai, sap] = spec.transA ? [1, m] : [k, 1];
    const [sbp, sbj] = spec.transB ? [1, k] : [n, 1];
    const threads = this.#pool.threads;
    const parallel = threads > 1 && 2 * m * n * k >= PARALLEL_FLOPS;
    for (let bat = 0; bat < spec.batch; bat++) {
      const a = 4 * (o[0] + bat * spec.batchStrideA);
      const b = 4 * (o[1] + bat * spec.batchStrideB);
      const c = 4 * (o[2] + bat * m * n);
      if (!parallel) {
        this.#gemm(a, sai, sap, b, sbp, sbj, c, n, k, 0, m, 0, n, 0, this.#work[0], this.#work[0]);
        continue;
      }
      const shares: number[][] = [];
      if (n >= m) {
        const step = Math.ceil(n / threads / 8) * 8;
        for (let j = 0; j < n; j += step) {
          const w = this.#work[shares.length];
          shares.push([a, sai, sap, b, sbp, sbj, c, n, k, 0, m, j, Math.min(n, j + step), 0, w, w]);
        }
      } else {
        const step = Math.ceil(m / threads / 6) * 6;
        for (let i = 0; i < m; i += step) {
          const w = this.#work[shares.length];
          shares.push([a, sai, sap, b, sbp, sbj, c, n, k, i, Math.min(m, i + step), 0, n, 0, w, w]);
        }
      }
      this.#pool.run(this.#gemm, "gemm", shares);
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

  beginGated(flag: BufferRef, dtype: DType): void {
    this.#check();
    if (this.#region) {
      throw new GatedRegionError(
        "gated regions do not nest: combine the flags into one (a product) and open one region",
      );
    }
    const s = flag.storage as CpuStorage;
    if (flag.numel !== 1 || flag.offset % OFFSET_ALIGN !== 0 || flag.offset + 4 > s.bytes) {
      throw new GatedRegionError(
        `a gate flag is one element at a ${OFFSET_ALIGN}-aligned offset, got ${flag.numel} ` +
          `at byte ${flag.offset}`,
      );
    }
    if (s.refs <= 0) throw new GatedRegionError("the gate flag's storage was released");
    const at = (s.ptr + flag.offset) >>> 2;
    const v = this.mem.views;
    // Kernels have all run: the flag holds its value now. -0 and 0 are off, NaN is on (as WGSL).
    const on = dtype === "f32" ? v.F[at] !== 0 : v.U[at] !== 0;
    this.#region = { on, used: new Set() };
  }

  endGated(): void {
    if (!this.#region) throw new GatedRegionError("endGated() without beginGated()");
    this.#region = null;
    this.stats.gatedRegions++;
  }

  #notInRegion(what: string): void {
    if (this.#region) {
      throw new GatedRegionError(
        `${what} inside a gated region: it cannot be gated; do it before beginGated() or ` +
          "after endGated() (inside, a copy can be a map kernel: ops.assign_)",
      );
    }
  }

  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void {
    this.#check();
    this.#notInRegion("a copy (copyBufferToBuffer)");
    this.#writeHook?.(dst, dstOffset, dstOffset + bytes);
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
    this.#notInRegion("a read");
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
    this.#notInRegion("a sync");
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
    this.#pool.close();
  }
}
