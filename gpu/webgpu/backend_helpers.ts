/**
 * The WebGPU backend's records and helpers (gpu/webgpu/backend.ts): its storage, binding,
 * compiled-kernel, gated-region and profiling records, the submit and query limits, the buffer
 * pool's size classes, the WGSL of a gated region's indirect arguments, and numbered WGSL for
 * error messages.
 * @module
 */

import type { ProfileEntry, Storage } from "../backend.ts";
import type { DType } from "../kernel.ts";
import type { Access } from "./render.ts";

/** A WebGPU storage: a pooled GPU buffer. */
export interface GpuStorage extends Storage {
  /** Underlying GPU buffer. */
  readonly buffer: GPUBuffer;
}

/** One buffer binding of a dispatch. */
export interface Binding {
  storage: GpuStorage;
  offset: number;
  size: number;
}

/** One compiled pass of a kernel. */
export interface CompiledPass {
  /** Profile name: the kernel's, with a suffix for passes before the main one. */
  name: string;
  /** Flops credited to this pass in profiles. */
  flops: number;
  pipeline: GPUComputePipeline;
  pipelineId: number;
  grid: [number, number, number];
  access: Access[];
  /** Spec buffer index of each binding, or SCRATCH. */
  bind: number[];
}

/** A rendered kernel ready to dispatch: one or more passes, in order. */
export interface Compiled {
  name: string;
  shape: string;
  /** Buffers the spec takes. */
  buffers: number;
  passes: CompiledPass[];
  /** The kernel's own scratch buffer (two-pass variants), not counted in `stats`. */
  scratch: GpuStorage | null;
}

/** A dispatch recorded inside a gated region, emitted as an indirect dispatch at its end. */
export interface Deferred {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  grid: [number, number, number];
  profile: ProfileEntry | null;
}

/** An open gated region (see `Backend.beginGated`). */
export interface Region {
  flag: Binding;
  dtype: DType;
  deferred: Deferred[];
  /** Buffers the region's dispatches bind (a host write into one would race them). */
  used: Set<GPUBuffer>;
}

/** Writes the indirect arguments of a gated region: `args[i] = flag != 0 ? counts[i] : 0`. */
export function gateArgsWgsl(dtype: DType): string {
  const on = dtype === "f32" ? "bitcast<f32>(flag[0]) != 0.0" : "flag[0] != 0u";
  return `@group(0) @binding(0) var<storage, read> flag: array<u32>;
@group(0) @binding(1) var<storage, read> counts: array<u32>;
@group(0) @binding(2) var<storage, read_write> args: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x;
  if (i >= arrayLength(&counts)) { return; }
  args[i] = select(0u, counts[i], ${on});
}
`;
}

/** Submit automatically after this many recorded dispatches. */
export const SUBMIT_EVERY = 128;

/** Most timestamp pairs one profiling query set holds before it is resolved. */
export const QUERY_PAIRS = 2048;

/** Rounds a byte count up to the pool's size class. */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  // Above 4 KiB: 8 classes per power of two (at most 12.5% waste).
  const p = 2 ** Math.floor(Math.log2(b));
  const step = p / 8;
  return Math.ceil(b / step) * step;
}

/** Formats WGSL with line numbers for error messages. */
export function numberLines(code: string): string {
  return code.split("\n").map((l, i) => `${String(i + 1).padStart(4)}| ${l}`).join("\n");
}

/** Per-kernel timing state while profiling. */
export interface Profiling {
  entries: Map<string, ProfileEntry>;
  querySet: GPUQuerySet | null;
  /** Kernel entry of each timestamp pair recorded into the current query set. */
  pending: ProfileEntry[];
  /** Resolved, not yet read: (buffer, entries) per resolved query set. */
  resolved: { buffer: GPUBuffer; entries: ProfileEntry[] }[];
}
