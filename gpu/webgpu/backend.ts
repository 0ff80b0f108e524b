/**
 * The WebGPU backend: WGSL compute shaders (rendered from kernel specs by render.ts) on Deno's
 * WebGPU.
 *
 * Runtime discipline (see docs/architecture.md):
 * - Dispatches are recorded into one open compute pass and submitted at a sync point (a read,
 *   an explicit `flush()`, or every `SUBMIT_EVERY` dispatches). Nothing here awaits except `read`.
 * - Rendered kernels and their pipelines are cached by the spec's compact key; bind groups by
 *   (pipeline, buffers, offsets).
 * - Buffers come from a size-bucketed pool and return to it only after the submit that used them.
 * - `read` packs several storages into one staging buffer and one `mapAsync`.
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
import { GatedRegionError, OFFSET_ALIGN, reportWrites, type WriteHook } from "../backend.ts";
import {
  type DType,
  kernelFlops,
  kernelKey,
  kernelName,
  kernelShape,
  type KernelSpec,
} from "../kernel.ts";
import { adapterInfo, checkDeviceLost, getAdapter, getDevice } from "./device.ts";
import { hasPendingTunes, installAutotune, runPendingTunes } from "./autotune.ts";
import {
  type Access,
  checkGateable,
  render,
  SCRATCH,
  setHardwareAdapter,
  variantKey,
} from "./render.ts";

import {
  type Binding,
  type Compiled,
  type CompiledPass,
  gateArgsWgsl,
  type GpuStorage,
  numberLines,
  type Profiling,
  QUERY_PAIRS,
  type Region,
  sizeClass,
  SUBMIT_EVERY,
} from "./backend_helpers.ts";

export { getAdapter };
// The backend's records and helpers live in backend_helpers.ts; `numberLines` is re-exported.
export { numberLines } from "./backend_helpers.ts";

/** WebGPU implementation of {@link Backend}. Create with {@link WebGPUBackend.create}. */
export class WebGPUBackend implements Backend {
  /** The device in use. */
  readonly device: GPUDevice;
  /** The device's storage buffers per shader stage. */
  readonly maxBindings: number;
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
    gatedRegions: 0,
  };
  #nextId = 1;
  #pool = new Map<number, GPUBuffer[]>();
  #pending: GPUBuffer[] = [];
  #kernels = new Map<string, Compiled>();
  #pipelines = new Map<string, { pipeline: GPUComputePipeline; id: number }>();
  #bindGroups = new Map<string, GPUBindGroup>();
  #bufferIds = new WeakMap<GPUBuffer, number>();
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #sinceSubmit = 0;
  #usedInEncoder = new Set<GPUBuffer>();
  #error: Error | null = null;
  #profiling: Profiling | null = null;
  #timestamps: boolean;
  #writeHook: WriteHook | null = null;
  #region: Region | null = null;
  /** Constant workgroup-count buffers of gated regions, by their counts. */
  #gateCounts = new Map<string, GpuStorage>();

  #lost: Promise<never>;

  private constructor(device: GPUDevice, info: BackendInfo) {
    this.device = device;
    this.info = info;
    this.maxBindings = device.limits.maxStorageBuffersPerShaderStage;
    this.#timestamps = device.features.has("timestamp-query");
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

  /** Acquires the shared device and wraps it; `reason` says why WebGPU was chosen. */
  static async create(reason: string): Promise<WebGPUBackend> {
    const { device } = await getDevice();
    const a = await adapterInfo();
    const kind = a.isFallbackAdapter ? "software fallback adapter" : "GPU adapter";
    setHardwareAdapter(!a.isFallbackAdapter);
    installAutotune(
      device,
      `${a.vendor}|${a.architecture}|${a.description}|${a.backend}|deno ${a.deno}`,
    );
    return new WebGPUBackend(device, {
      kind: "webgpu",
      device: `${kind} '${a.description || a.vendor}' (DENO_WEBGPU_BACKEND=${a.backend})`,
      reason,
    });
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
    const storage: GpuStorage = { id: this.#bufferIds.get(buffer)!, bytes, buffer, refs: 1 };
    return storage;
  }

  setWriteHook(hook: WriteHook | null): void {
    this.#writeHook = hook;
  }

  write(storage: Storage, data: ArrayBufferView, offset = 0): void {
    this.#writeHook?.(storage, offset, offset + data.byteLength);
    const s = storage as GpuStorage;
    if (offset + data.byteLength > s.bytes) {
      throw new RangeError(
        `write of ${data.byteLength} bytes at offset ${offset} overflows a ${s.bytes}-byte storage`,
      );
    }
    if (this.#region?.used.has(s.buffer)) {
      throw new GatedRegionError(
        "a host write into a storage that kernels of the open gated region bind: the write " +
          "would land before them; write it before the region (beginGated) or after it",
      );
    }
    // queue.writeBuffer is ordered before the next submit; work already recorded into the open
    // encoder that touches this storage must be submitted first, or it would see the new data.
    if (this.#usedInEncoder.has(s.buffer)) this.flush();
    const pad = data.byteLength % 4;
    if (pad === 0) {
      this.device.queue.writeBuffer(
        s.buffer,
        offset,
        data.buffer as ArrayBuffer,
        data.byteOffset,
        data.byteLength,
      );
    } else {
      const tmp = new Uint8Array(data.byteLength + 4 - pad);
      tmp.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(s.buffer, offset, tmp);
    }
  }

  #pipeline(name: string, code: string): { pipeline: GPUComputePipeline; id: number } {
    const cached = this.#pipelines.get(code);
    if (cached) return cached;
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code, label: name });
    const pipeline = this.device.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
      label: name,
    });
    // Validation errors arrive asynchronously; report them with the numbered source.
    this.device.popErrorScope().then((err) => {
      if (err) {
        this.#error ??= new Error(
          `WGSL kernel '${name}' failed to compile:${err.message}\n--- source ---\n` +
            numberLines(code),
        );
      }
    });
    const entry = { pipeline, id: this.#pipelines.size + 1 };
    this.#pipelines.set(code, entry);
    this.stats.pipelines++;
    return entry;
  }

  /** The compiled kernel of `spec`, rendered and compiled on first use. */
  #compiled(spec: KernelSpec): Compiled {
    const key = kernelKey(spec) + variantKey(spec);
    let c = this.#kernels.get(key);
    if (c) return c;
    const r = render(spec);
    const name = kernelName(spec);
    const flops = kernelFlops(spec);
    const passes: CompiledPass[] = [];
    const before = r.before ?? [];
    before.forEach((p, i) => {
      const label = `${name}:pass${i + 1}`;
      const { pipeline, id } = this.#pipeline(label, p.code);
      passes.push({
        name: label,
        flops: i === 0 ? flops : 0,
        pipeline,
        pipelineId: id,
        grid: p.grid,
        access: p.access,
        bind: p.bind,
      });
    });
    const { pipeline, id } = this.#pipeline(name, r.code);
    const bind = r.bind ?? r.access.map((_, i) => i);
    passes.push({
      name: before.length ? `${name}:combine` : name,
      flops: before.length ? 0 : flops,
      pipeline,
      pipelineId: id,
      grid: r.grid,
      access: r.access,
      bind,
    });
    const buffers = Math.max(...passes.flatMap((p) => p.bind)) + 1;
    let scratch: GpuStorage | null = null;
    if (r.scratch) {
      const size = Math.max(16, Math.ceil(r.scratch / 16) * 16);
      const buffer = this.device.createBuffer({ size, usage: GPUBufferUsage.STORAGE });
      const sid = this.#nextId++;
      this.#bufferIds.set(buffer, sid);
      scratch = { id: sid, bytes: size, buffer, refs: 1 };
    }
    c = { name, shape: kernelShape(spec), buffers, passes, scratch };
    if (this.#kernels.size > 16384) this.#clearKernels();
    this.#kernels.set(key, c);
    return c;
  }

  /** Drops every compiled kernel (after submitting the work that may use their scratch). */
  #clearKernels(): void {
    this.flush();
    for (const k of this.#kernels.values()) k.scratch?.buffer.destroy();
    this.#kernels.clear();
    this.#bindGroups.clear();
  }

  #bindGroup(c: CompiledPass, bindings: Binding[]): GPUBindGroup {
    let key = `${c.pipelineId}`;
    for (const b of bindings) key += `|${b.storage.id}:${b.offset}:${b.size}`;
    let bg = this.#bindGroups.get(key);
    if (bg) return bg;
    bg = this.device.createBindGroup({
      layout: c.pipeline.getBindGroupLayout(0),
      entries: bindings.map((b, i) => ({
        binding: i,
        resource: { buffer: b.storage.buffer, offset: b.offset, size: b.size },
      })),
    });
    if (this.#bindGroups.size > 8192) this.#bindGroups.clear();
    this.#bindGroups.set(key, bg);
    return bg;
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  #openPass(entry: ProfileEntry | null): GPUComputePassEncoder {
    const p = this.#profiling;
    if (entry && p && this.#timestamps) {
      // Profiling: one pass per dispatch, timed by the pass's begin/end timestamps.
      this.#endPass();
      if (p.pending.length >= QUERY_PAIRS) this.#resolveQueries();
      p.querySet ??= this.device.createQuerySet({ type: "timestamp", count: 2 * QUERY_PAIRS });
      const i = p.pending.length;
      p.pending.push(entry);
      this.#encoder ??= this.device.createCommandEncoder();
      this.#pass = this.#encoder.beginComputePass({
        timestampWrites: {
          querySet: p.querySet,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
      return this.#pass;
    }
    if (!this.#pass) {
      this.#encoder ??= this.device.createCommandEncoder();
      this.#pass = this.#encoder.beginComputePass();
    }
    return this.#pass;
  }

  run(spec: KernelSpec, buffers: readonly BufferRef[], gate?: Gate): void {
    this.#checkErrors();
    const hook = this.#writeHook;
    if (hook) reportWrites(hook, spec, buffers);
    const c = this.#compiled(spec);
    if (gate) {
      checkGateable(spec);
      if (this.#region) {
        throw new GatedRegionError(
          `kernel '${c.name}' has its own gate inside a gated region: the region gates it; ` +
            "run it without the gate",
        );
      }
    }
    this.#dispatch(c, buffers, gate);
  }

  /**
   * Runs a hand-written WGSL kernel (entry point `main`, buffers bound at @group(0) @binding(i)
   * with the given access) over a direct grid: for custom kernels outside the spec families.
   * Compile errors are reported with the numbered source at the next sync.
   */
  runWgsl(
    name: string,
    code: string,
    buffers: readonly BufferRef[],
    access: readonly Access[],
    grid: [number, number, number],
  ): void {
    this.#checkErrors();
    const { pipeline, id } = this.#pipeline(name, code);
    const c: Compiled = {
      name,
      shape: "",
      buffers: access.length,
      passes: [{
        name,
        flops: 0,
        pipeline,
        pipelineId: id,
        grid,
        access: [...access],
        bind: access.map((_, i) => i),
      }],
      scratch: null,
    };
    this.#dispatch(c, buffers);
  }

  #dispatch(c: Compiled, buffers: readonly BufferRef[], gate?: Gate): void {
    if (buffers.length !== c.buffers) {
      throw new Error(`kernel '${c.name}': ${buffers.length} buffers given, ${c.buffers} bound`);
    }
    const given: Binding[] = buffers.map((b) => {
      if (b.storage.refs <= 0) throw new Error(`kernel '${c.name}': a bound storage was released`);
      if (b.offset % OFFSET_ALIGN !== 0) {
        throw new Error(
          `kernel '${c.name}': binding offset ${b.offset} is not ${OFFSET_ALIGN}-aligned`,
        );
      }
      return { storage: b.storage as GpuStorage, offset: b.offset, size: Math.max(4, b.numel * 4) };
    });
    const main = c.passes[c.passes.length - 1];
    if (!gate && main.grid[0] * main.grid[1] * main.grid[2] === 0) return;
    const scratch: Binding | null = c.scratch &&
      { storage: c.scratch, offset: 0, size: c.scratch.bytes };
    const region = this.#region;
    if (region) {
      for (const b of given) region.used.add(b.storage.buffer);
      for (const p of c.passes) {
        const bindings = p.bind.map((i) => (i === SCRATCH ? scratch! : given[i]));
        region.deferred.push({
          pipeline: p.pipeline,
          bindGroup: this.#bindGroup(p, bindings),
          grid: p.grid,
          profile: this.#profiling ? this.#entry(c, p) : null,
        });
      }
      return;
    }
    for (const b of given) this.#usedInEncoder.add(b.storage.buffer);
    for (const p of c.passes) {
      const bindings = p.bind.map((i) => (i === SCRATCH ? scratch! : given[i]));
      const bg = this.#bindGroup(p, bindings);
      const entry = this.#profiling ? this.#entry(c, p) : null;
      const pass = this.#openPass(entry);
      pass.setPipeline(p.pipeline);
      pass.setBindGroup(0, bg);
      if (gate) {
        const buffer = (gate.storage as GpuStorage).buffer;
        this.#usedInEncoder.add(buffer);
        pass.dispatchWorkgroupsIndirect(buffer, gate.offset);
      } else {
        pass.dispatchWorkgroups(p.grid[0], p.grid[1], p.grid[2]);
      }
      this.stats.dispatches++;
    }
    if (++this.#sinceSubmit >= SUBMIT_EVERY) this.flush();
  }

  beginGated(flag: BufferRef, dtype: DType): void {
    this.#checkErrors();
    if (this.#region) {
      throw new GatedRegionError(
        "gated regions do not nest: combine the flags into one (a product) and open one region",
      );
    }
    if (flag.numel !== 1 || flag.offset % OFFSET_ALIGN !== 0) {
      throw new GatedRegionError(
        `a gate flag is one element at a ${OFFSET_ALIGN}-aligned offset, got ${flag.numel} ` +
          `at byte ${flag.offset}`,
      );
    }
    if (flag.storage.refs <= 0) throw new GatedRegionError("the gate flag's storage was released");
    this.retain(flag.storage);
    const storage = flag.storage as GpuStorage;
    this.#region = {
      flag: { storage, offset: flag.offset, size: 4 },
      dtype,
      deferred: [],
      used: new Set(),
    };
  }

  endGated(): void {
    const r = this.#region;
    if (!r) throw new GatedRegionError("endGated() without beginGated()");
    this.#region = null;
    this.stats.gatedRegions++;
    if (r.deferred.length) {
      const counts = this.#countsBuffer(r.deferred.flatMap((d) => d.grid));
      const args = this.alloc(counts.bytes) as GpuStorage;
      const { pipeline, id } = this.#pipeline(`gate_args_${r.dtype}`, gateArgsWgsl(r.dtype));
      const n = r.deferred.length * 3;
      const argsPass: CompiledPass = {
        name: "gate_args",
        flops: 0,
        pipeline,
        pipelineId: id,
        grid: [Math.ceil(n / 64), 1, 1],
        access: ["read", "read", "read_write"],
        bind: [0, 1, 2],
      };
      this.#usedInEncoder.add(r.flag.storage.buffer).add(args.buffer);
      for (const b of r.used) this.#usedInEncoder.add(b);
      const bg = this.#bindGroup(argsPass, [
        r.flag,
        { storage: counts, offset: 0, size: counts.bytes },
        { storage: args, offset: 0, size: counts.bytes },
      ]);
      let pass = this.#openPass(null);
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(argsPass.grid[0]);
      this.stats.dispatches++;
      r.deferred.forEach((d, i) => {
        pass = this.#openPass(d.profile);
        pass.setPipeline(d.pipeline);
        pass.setBindGroup(0, d.bindGroup);
        pass.dispatchWorkgroupsIndirect(args.buffer, 12 * i);
        this.stats.dispatches++;
      });
      this.release(args);
      this.#sinceSubmit += r.deferred.length + 1;
    }
    this.release(r.flag.storage);
    if (this.#sinceSubmit >= SUBMIT_EVERY) this.flush();
  }

  /** The constant buffer holding `counts` (cached: a loop's regions repeat). */
  #countsBuffer(counts: number[]): GpuStorage {
    const key = counts.join(",");
    let s = this.#gateCounts.get(key);
    if (s) return s;
    if (this.#gateCounts.size >= 256) {
      this.flush();
      for (const old of this.#gateCounts.values()) old.buffer.destroy();
      this.#gateCounts.clear();
    }
    const bytes = counts.length * 4;
    const buffer = this.device.createBuffer({
      size: Math.max(16, Math.ceil(bytes / 16) * 16),
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    this.device.queue.writeBuffer(buffer, 0, Uint32Array.from(counts));
    const id = this.#nextId++;
    this.#bufferIds.set(buffer, id);
    s = { id, bytes, buffer, refs: 1 };
    this.#gateCounts.set(key, s);
    return s;
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
    this.#checkErrors();
    this.#notInRegion("a copy (copyBufferToBuffer)");
    this.#writeHook?.(dst, dstOffset, dstOffset + bytes);
    this.#endPass();
    const s = src as GpuStorage;
    const d = dst as GpuStorage;
    this.#encoder ??= this.device.createCommandEncoder();
    this.#encoder.copyBufferToBuffer(s.buffer, srcOffset, d.buffer, dstOffset, bytes);
    this.#usedInEncoder.add(s.buffer).add(d.buffer);
  }

  flush(): void {
    if (this.#encoder) {
      this.#endPass();
      if (this.#profiling?.pending.length) this.#resolveQueries();
      this.device.queue.submit([this.#encoder.finish()]);
      this.#encoder = null;
      this.#sinceSubmit = 0;
      this.#usedInEncoder.clear();
      this.stats.submits++;
    }
    // Buffers released before this submit may now be reused by later work; not while a gated
    // region is open: its deferred dispatches, not yet recorded, may still bind them.
    if (this.#region) return;
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
    this.#notInRegion("a read");
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
    this.#endPass();
    this.#encoder ??= this.device.createCommandEncoder();
    regions.forEach((r, i) => {
      const n = Math.ceil(r.bytes / 4) * 4;
      if (n > 0) {
        const buffer = (r.storage as GpuStorage).buffer;
        this.#encoder!.copyBufferToBuffer(buffer, r.offset, staging, starts[i], n);
      }
    });
    this.flush();
    this.stats.hostSyncs++;
    await this.#waitFor(staging.mapAsync(GPUMapMode.READ));
    const all = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    this.#checkErrors();
    if (hasPendingTunes()) await runPendingTunes();
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
    this.#notInRegion("a sync");
    this.flush();
    this.stats.hostSyncs++;
    await this.#waitFor(this.device.queue.onSubmittedWorkDone());
    this.#checkErrors();
    if (hasPendingTunes()) await runPendingTunes();
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
      this.#pending.push((storage as GpuStorage).buffer);
      if (!this.#encoder) this.flush();
    }
  }

  #entry(c: Compiled, pass: CompiledPass): ProfileEntry {
    const p = this.#profiling!;
    const key = `${pass.name}|${c.shape}`;
    let e = p.entries.get(key);
    if (!e) p.entries.set(key, e = { name: pass.name, shape: c.shape, calls: 0, ms: 0, flops: 0 });
    e.calls++;
    e.flops += pass.flops;
    return e;
  }

  /** Resolves the open query set into a buffer read at the end of profiling. */
  #resolveQueries(): void {
    const p = this.#profiling!;
    if (!p.querySet || !p.pending.length) return;
    this.#endPass();
    this.#encoder ??= this.device.createCommandEncoder();
    const bytes = p.pending.length * 16;
    const resolve = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const buffer = this.device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.#encoder.resolveQuerySet(p.querySet, 0, 2 * p.pending.length, resolve, 0);
    this.#encoder.copyBufferToBuffer(resolve, 0, buffer, 0, bytes);
    p.resolved.push({ buffer, entries: p.pending });
    p.pending = [];
    p.querySet = this.device.createQuerySet({ type: "timestamp", count: 2 * QUERY_PAIRS });
  }

  profile(on: true): void;
  profile(on: false): Promise<ProfileEntry[]>;
  profile(on: boolean): void | Promise<ProfileEntry[]> {
    if (on) {
      this.flush();
      this.#profiling = { entries: new Map(), querySet: null, pending: [], resolved: [] };
      return;
    }
    return this.#finishProfile();
  }

  async #finishProfile(): Promise<ProfileEntry[]> {
    const p = this.#profiling;
    if (!p) return [];
    this.flush();
    this.#profiling = null;
    for (const { buffer, entries } of p.resolved) {
      await this.#waitFor(buffer.mapAsync(GPUMapMode.READ));
      const t = new BigUint64Array(buffer.getMappedRange());
      entries.forEach((e, i) => {
        const dt = Number(t[2 * i + 1] - t[2 * i]);
        if (dt > 0 && dt < 1e12) e.ms += dt / 1e6;
      });
      buffer.unmap();
      buffer.destroy();
    }
    return [...p.entries.values()].sort((a, b) => b.ms - a.ms || b.calls - a.calls);
  }

  close(): void {
    this.flush();
  }
}
