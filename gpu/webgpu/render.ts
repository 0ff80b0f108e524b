/**
 * Renders a backend-neutral {@link KernelSpec} into what WebGPU runs: WGSL text, the workgroup
 * grid, and the access of each buffer. Variant choices for WebGPU (matmul tiles, per-thread or
 * per-workgroup reductions, vec4 paths) are made here, in one place. The backend caches the
 * result under the spec's key, so nothing here runs twice for the same kernel.
 * @module
 */

import {
  colCols,
  colRows,
  GATEABLE,
  gateSize,
  type KernelSpec,
  type MatmulSpec,
  planReduce,
} from "../kernel.ts";
import { envGet } from "../backend.ts";
import { elementGroups, foldGrid, numel, WG } from "./shaders/common.ts";
import { mapIsVec4, mapShader, packShader, placeShader } from "./shaders/elementwise.ts";
import {
  type BlockConfig,
  blockTile,
  checkTile,
  LARGE_BLOCK,
  matmulBlockedShader,
  matmulSimpleShader,
  matmulTiledShader,
  SMALL_BLOCK,
  type SplitK,
  splitK,
  splitKSumShader,
  TILE_128x64,
  TILE_64,
  type TileConfig,
} from "./shaders/matmul.ts";
import {
  normCombineShader,
  normPartialShader,
  reduceCombineShader,
  reduceScratch,
  reduceShader,
  type ReduceSplit,
  reduceSplit,
} from "./shaders/reduce.ts";
import {
  col2imShader,
  im2colPerThread,
  im2colShader,
  maxPool2dBackwardShader,
  maxPool2dShader,
} from "./shaders/conv.ts";
import {
  gatherRowsShader,
  pickShader,
  scatterAddRowsShader,
  unpickShader,
} from "./shaders/gather.ts";
import { lstmBackwardShader, lstmForwardShader } from "./shaders/lstm.ts";
import {
  adamShader,
  advanceShader,
  clipScaleShader,
  normShader,
  sgdShader,
} from "./shaders/optim.ts";
import { categoricalShader, randomShader } from "./shaders/random.ts";

/** How a kernel uses one of its buffers. */
export type Access = "read" | "read_write";

/** The scratch binding in {@link RenderedPass.bind}: a buffer the backend keeps per kernel. */
export const SCRATCH: number = -1;

/** A pass run before a kernel's main pass (it writes the scratch buffer the main pass reads). */
export interface RenderedPass {
  /** WGSL source with entry point `main`. */
  code: string;
  /** Workgroup counts of a direct dispatch. */
  grid: [number, number, number];
  /** Access of each binding. */
  access: Access[];
  /** What each binding is: an index into the spec's buffers, or {@link SCRATCH}. */
  bind: number[];
}

/** A rendered kernel. */
export interface Rendered {
  /** WGSL source with entry point `main`. */
  code: string;
  /** Workgroup counts of a direct dispatch. */
  grid: [number, number, number];
  /** Access of each binding, in the spec's order (or the order of `bind`). */
  access: Access[];
  /** Passes run first, in order (two-pass variants: split-K, split reductions). */
  before?: RenderedPass[];
  /** The main pass's bindings (default: the spec's buffers in order); see {@link SCRATCH}. */
  bind?: number[];
  /** Bytes of scratch the passes share (the backend allocates it once per kernel). */
  scratch?: number;
}

/**
 * Which matmul kernel a product uses on WebGPU: `simple` (a thread per output), `blocked`
 * (register tiles, no shared memory) or `tiled` (workgroup-memory tiles).
 */
export type MatmulVariant = "blocked" | "simple" | "tiled";

/** A complete matmul choice: the variant, its tile, and an optional split of the contraction. */
export interface MatmulPlan {
  /** The kernel. */
  variant: MatmulVariant;
  /** Register tile of `blocked`. */
  block?: BlockConfig;
  /** Workgroup tile of `tiled`. */
  tile?: TileConfig;
  /** Split-K: slices of the contraction (>= 2), summed by a second pass; blocked/tiled only. */
  splitK?: number;
}

/** Workgroups taken to fill one wave of a hardware GPU (its size is not exposed by WebGPU). */
export const WAVE = 256;

/** Most scratch a split variant may use (bytes). */
const MAX_SCRATCH = 64 * 2 ** 20;

let hardware = false;

/**
 * Declares whether the adapter is a hardware GPU (the backend calls this at creation; tests call
 * it to exercise the hardware choices on llvmpipe). On hardware, matmuls default to the tiled
 * kernel (split-K when the output grid fills less than a {@link WAVE}) and long reductions and
 * norms to two passes; on a software adapter the register-blocked kernel and one-pass reductions
 * stay the default.
 */
export function setHardwareAdapter(on: boolean): void {
  hardware = on;
}

/** Whether render choices follow a hardware adapter (see {@link setHardwareAdapter}). */
export function isHardwareAdapter(): boolean {
  return hardware;
}

/** Chooses the matmul variant between simple and blocked (exported for benchmarks and tests). */
export function matmulVariant(s: MatmulSpec): MatmulVariant {
  // Thin products (a dimension below 8) and small ones run one thread per output; a small output
  // with a long contraction (a conv weight gradient: 64x25 with k = 12544) still pays off blocked.
  if (s.m < 8 || s.n < 8) return "simple";
  return s.m * s.n >= 2048 || s.k >= 256 ? "blocked" : "simple";
}

/** Chooses the blocked kernel's tile: large tiles once there are enough of them to share out. */
export function chooseBlock(s: MatmulSpec): BlockConfig {
  return s.batch * s.m * s.n >= 128 * 128 && s.m >= 64 && s.n >= 64 ? LARGE_BLOCK : SMALL_BLOCK;
}

/** Workgroups of a plan's output grid (without split). */
function outputGroups(s: MatmulSpec, p: MatmulPlan): number {
  if (p.variant === "simple") return Math.ceil((s.batch * s.m * s.n) / 64);
  const [tn, tm] = p.variant === "tiled" ? [p.tile!.tn, p.tile!.tm] : blockTile(p.block!);
  return Math.ceil(s.n / tn) * Math.ceil(s.m / tm) * s.batch;
}

/**
 * Split-K slices for a product whose output grid (`groups` workgroups) fills less than a wave:
 * enough slices to fill one, each at least 256 long, at most 64; 1 when it does not pay.
 */
export function chooseSplitK(s: MatmulSpec, groups: number): number {
  if (groups >= WAVE / 2 || s.k < 1024) return 1;
  const parts = Math.min(Math.ceil(WAVE / groups), Math.floor(s.k / 256), 64);
  const fit = Math.floor(MAX_SCRATCH / (4 * s.batch * s.m * s.n));
  return Math.max(1, Math.min(parts, fit));
}

/**
 * The deterministic matmul choice (no override, no autotuning): today's simple/blocked choice
 * on software adapters; on hardware, the tiled kernel for products of at least 32x32 (128x64
 * tiles when there are a wave of them), with split-K when the grid fills less than a wave.
 */
export function defaultMatmulPlan(s: MatmulSpec): MatmulPlan {
  const variant = matmulVariant(s);
  if (variant === "simple") return { variant };
  let plan: MatmulPlan;
  if (!hardware) return { variant, block: chooseBlock(s) };
  if (s.m >= 32 && s.n >= 32) {
    const big = s.m >= 128 && s.batch * Math.ceil(s.m / 128) * Math.ceil(s.n / 64) >= WAVE;
    plan = { variant: "tiled", tile: big ? TILE_128x64 : TILE_64 };
  } else {
    plan = { variant: "blocked", block: SMALL_BLOCK };
  }
  const parts = chooseSplitK(s, outputGroups(s, plan));
  return parts > 1 ? { ...plan, splitK: parts } : plan;
}

let matmulOverride: MatmulPlan | null = null;

/**
 * Forces a matmul variant, tile and split (tests and benchmarks); `null` restores the automatic
 * choice. A missing tile means {@link SMALL_BLOCK} (blocked) or {@link TILE_64} (tiled).
 */
export function forceMatmul(
  v: { variant: MatmulVariant; block?: BlockConfig; tile?: TileConfig; splitK?: number } | null,
): void {
  matmulOverride = v && completePlan(v);
}

function completePlan(v: MatmulPlan): MatmulPlan {
  const plan: MatmulPlan = { variant: v.variant };
  if (v.variant === "blocked") plan.block = v.block ?? SMALL_BLOCK;
  if (v.variant === "tiled") {
    plan.tile = v.tile ?? TILE_64;
    checkTile(plan.tile);
  }
  if (v.splitK && v.splitK > 1 && v.variant !== "simple") plan.splitK = v.splitK;
  return plan;
}

let envPlan: { plan: MatmulPlan | null; splitK: number } | undefined;

/**
 * The matmul choice forced by the environment, read once: `AUTOLOSS_MATMUL=simple|blocked|tiled`
 * (default tiles) and `AUTOLOSS_SPLITK=<slices>` (with blocked or tiled; alone it splits the
 * automatic choice whenever that is blocked or tiled).
 */
function envMatmul(): { plan: MatmulPlan | null; splitK: number } {
  if (envPlan) return envPlan;
  const v = envGet("AUTOLOSS_MATMUL");
  const splitK = Math.max(1, Number(envGet("AUTOLOSS_SPLITK") ?? "1") | 0);
  const plan = v === "simple" || v === "blocked" || v === "tiled"
    ? completePlan({ variant: v, splitK })
    : null;
  envPlan = { plan, splitK };
  return envPlan;
}

/** A tuned-choice lookup (set by autotune.ts): the plan for a product, or undefined. */
let tunedLookup: ((s: MatmulSpec) => MatmulPlan | undefined) | null = null;

/** Installs the autotuner's lookup (autotune.ts); `null` removes it. */
export function setMatmulTuning(lookup: ((s: MatmulSpec) => MatmulPlan | undefined) | null): void {
  tunedLookup = lookup;
}

/**
 * The matmul plan in force for `s`: a forced one ({@link forceMatmul}), else the environment's
 * (`AUTOLOSS_MATMUL`, `AUTOLOSS_SPLITK`), else a tuned one, else {@link defaultMatmulPlan}.
 */
export function matmulPlan(s: MatmulSpec): MatmulPlan {
  if (matmulOverride) return matmulOverride;
  const env = envMatmul();
  if (env.plan) return env.plan;
  const plan = tunedLookup?.(s) ?? defaultMatmulPlan(s);
  return env.splitK > 1 && plan.variant !== "simple" ? { ...plan, splitK: env.splitK } : plan;
}

let reduceOverride: number | null = null;

/**
 * Forces the split of reductions and norms into `parts` slices per output (2+: the two-pass
 * variant wherever it applies, 1: never; tests and benchmarks); `null` restores the automatic
 * choice (`AUTOLOSS_REDUCE_SPLIT=<parts>` sets the same from the environment).
 */
export function forceReduceSplit(parts: number | null): void {
  reduceOverride = parts;
}

/**
 * Slices per output for a reduction (or norm) of `nOut` outputs over `nRed` elements each:
 * forced, or on hardware when the one-pass grid (`nOut` workgroups) fills less than half a wave
 * and rows are long (>= 16384): enough slices of >= 4096 to fill a wave, at most 1024.
 */
export function chooseReduceSplit(nOut: number, nRed: number): number {
  const forced = reduceOverride ?? (Number(envGet("AUTOLOSS_REDUCE_SPLIT") ?? "0") | 0);
  if (forced) return Math.max(1, Math.min(forced, Math.ceil(nRed / 64)));
  if (!hardware || nOut >= WAVE / 2 || nRed < 16384) return 1;
  return Math.max(1, Math.min(Math.ceil(WAVE / nOut), Math.floor(nRed / 4096), 1024));
}

/**
 * The part of a kernel's cache key that depends on variant choices rather than on the spec
 * (forced or tuned matmul plans, reduce splits, the adapter class): the backend appends it to
 * the spec's key so that a forced variant never reuses another variant's pipeline.
 */
export function variantKey(spec: KernelSpec): string {
  switch (spec.kind) {
    case "matmul":
      return JSON.stringify(matmulPlan(spec));
    case "reduce":
    case "norm":
      return `|r${hardware ? "h" : ""}${reduceOverride ?? ""}`;
    default:
      return "";
  }
}

/** The override in force, as part of cache keys (kept for callers of the old hook). */
export function matmulOverrideKey(): string {
  return matmulOverride ? JSON.stringify(matmulOverride) : "";
}

/** Renders a matmul under `plan` (exported for the autotuner and benchmarks). */
export function renderMatmul(spec: MatmulSpec, plan: MatmulPlan): Rendered {
  if (plan.variant === "simple") {
    const { grid, nx } = threads(spec.batch * spec.m * spec.n);
    return { code: matmulSimpleShader(spec, nx), grid, access: reads(3) };
  }
  const split: SplitK | undefined = plan.splitK && plan.splitK > 1
    ? splitK(spec.k, plan.splitK)
    : undefined;
  const z = spec.batch * (split && split.parts > 1 ? split.parts : 1);
  const effective = split && split.parts > 1 ? split : undefined;
  let code: string;
  let grid: [number, number, number];
  if (plan.variant === "tiled") {
    const t = plan.tile ?? TILE_64;
    code = matmulTiledShader(spec, t, effective);
    grid = [Math.ceil(spec.n / t.tn), Math.ceil(spec.m / t.tm), z];
  } else {
    const block = plan.block ?? SMALL_BLOCK;
    const [tn, tm] = blockTile(block);
    code = matmulBlockedShader(spec, block, effective);
    grid = [Math.ceil(spec.n / tn), Math.ceil(spec.m / tm), z];
  }
  if (!effective) return { code, grid, access: reads(3) };
  const { grid: sumGrid, nx } = threads(spec.batch * spec.m * spec.n);
  return {
    before: [{ code, grid, access: reads(3), bind: [0, 1, SCRATCH] }],
    code: splitKSumShader(spec, effective.parts, nx),
    grid: sumGrid,
    access: reads(2),
    bind: [SCRATCH, 2],
    scratch: 4 * effective.parts * spec.batch * spec.m * spec.n,
  };
}

function reads(n: number): Access[] {
  return [...new Array(n - 1).fill("read"), "read_write"];
}

/** A 1-D element kernel over `threads` threads of WG per workgroup: grid and the `nx` it folds. */
function threads(n: number, perGroup = WG): { grid: [number, number, number]; nx: number } {
  return foldGrid(Math.ceil(n / perGroup));
}

/** Renders `spec` for WebGPU. */
export function render(spec: KernelSpec): Rendered {
  switch (spec.kind) {
    case "map": {
      const n = numel(spec.shape);
      const off = spec.outOffset ?? 0;
      const groups = mapIsVec4(spec.shape, spec.inputs, off)
        ? Math.ceil(n / 4 / WG)
        : elementGroups(n);
      const { grid, nx } = foldGrid(groups);
      return {
        code: mapShader(spec.expr, spec.shape, spec.inputs, spec.out, nx, off),
        grid,
        access: reads(spec.inputs.length + 1),
      };
    }
    case "pack": {
      const n = spec.parts.reduce((acc, p) => acc + numel(p.shape), 0);
      const { grid, nx } = foldGrid(elementGroups(n));
      return {
        code: packShader(spec.parts, spec.buffers, spec.out, nx),
        grid,
        access: reads(spec.buffers.length + 1),
      };
    }
    case "place": {
      const { grid, nx } = foldGrid(elementGroups(numel(spec.shape)));
      return {
        code: placeShader(
          spec.shape,
          spec.outStrides,
          spec.offset,
          spec.dtype,
          nx,
          spec.accumulate,
        ),
        grid,
        access: reads(2),
      };
    }
    case "reduce": {
      const plan = planReduce(spec.shape, spec.axes, spec.inputs.map((i) => i.strides));
      const nOut = numel(plan.keepShape);
      const nRed = numel(plan.redShape);
      const parts = chooseReduceSplit(nOut, nRed);
      if (parts > 1) {
        const split: ReduceSplit = reduceSplit(nRed, parts);
        const { grid, nx } = foldGrid(nOut * split.parts);
        const n = spec.inputs.length;
        const combine = threads(nOut);
        return {
          before: [{
            code: reduceShader(spec.op, plan, spec.expr, spec.inputs, nx, true, split),
            grid,
            access: reads(n + 1),
            bind: [...spec.inputs.map((_, i) => i), SCRATCH],
          }],
          code: reduceCombineShader(spec.op, nOut, split.parts, combine.nx),
          grid: combine.grid,
          access: reads(2),
          bind: [SCRATCH, n],
          scratch: 4 * reduceScratch(spec.op, nOut, split.parts),
        };
      }
      // Long rows and few outputs: a workgroup per output keeps all lanes busy.
      const perGroup = nRed >= 256 && nOut < 4096;
      const { grid, nx } = foldGrid(perGroup ? nOut : Math.ceil(nOut / WG));
      return {
        code: reduceShader(spec.op, plan, spec.expr, spec.inputs, nx, perGroup),
        grid,
        access: reads(spec.inputs.length + 1),
      };
    }
    case "matmul":
      return renderMatmul(spec, matmulPlan(spec));
    case "im2col": {
      const { grid, nx } = threads((colRows(spec.g) * colCols(spec.g)) / im2colPerThread(spec.g));
      return { code: im2colShader(spec.g, nx), grid, access: reads(2) };
    }
    case "col2im": {
      const g = spec.g;
      const { grid, nx } = threads(g.n * g.c * g.h * g.w);
      return { code: col2imShader(g, nx), grid, access: reads(2) };
    }
    case "maxPool2d": {
      const g = spec.g;
      const { grid, nx } = threads(g.n * g.c * g.outH * g.outW);
      return { code: maxPool2dShader(g, spec.idxOffset, nx), grid, access: reads(2) };
    }
    case "maxPool2dBackward": {
      const g = spec.g;
      const { grid, nx } = threads(g.n * g.c * g.h * g.w);
      return { code: maxPool2dBackwardShader(g, nx), grid, access: reads(3) };
    }
    case "gatherRows": {
      const { grid, nx } = threads(spec.n * spec.dim);
      return { code: gatherRowsShader(spec.rows, spec.dim, spec.n, nx), grid, access: reads(3) };
    }
    case "scatterAddRows": {
      const { grid, nx } = threads(spec.n * spec.dim);
      return {
        code: scatterAddRowsShader(spec.rows, spec.dim, spec.n, nx),
        grid,
        access: reads(3),
      };
    }
    case "pick": {
      const { grid, nx } = threads(spec.rows);
      return { code: pickShader(spec.rows, spec.k, nx), grid, access: reads(3) };
    }
    case "unpick": {
      const { grid, nx } = threads(spec.rows * spec.k);
      return { code: unpickShader(spec.rows, spec.k, nx), grid, access: reads(3) };
    }
    case "adam":
      return {
        code: adamShader(spec.span, spec.decay),
        grid: gateSize(spec.span.n),
        access: ["read", "read", "read_write", "read", "read_write", "read_write"],
      };
    case "sgd":
      return {
        code: sgdShader(spec.span, spec.momentum, spec.nesterov),
        grid: gateSize(spec.span.n),
        access: [
          "read",
          "read",
          "read_write",
          "read",
          ...(spec.momentum ? ["read_write"] : []),
        ] as Access[],
      };
    case "advance":
      return { code: advanceShader(spec.slot), grid: [1, 1, 1], access: ["read_write"] };
    case "norm": {
      const parts = chooseReduceSplit(1, spec.n);
      if (parts > 1) {
        const split = reduceSplit(spec.n, parts);
        return {
          before: [{
            code: normPartialShader(spec.start, spec.n, split),
            grid: [split.parts, 1, 1],
            access: reads(2),
            bind: [0, SCRATCH],
          }],
          code: normCombineShader(split.parts, spec.outIndex),
          grid: [1, 1, 1],
          access: reads(2),
          bind: [SCRATCH, 1],
          scratch: 4 * split.parts,
        };
      }
      return {
        code: normShader(spec.start, spec.n, spec.outIndex),
        grid: [1, 1, 1],
        access: reads(2),
      };
    }
    case "clipScale":
      return {
        code: clipScaleShader(spec.start, spec.n, spec.maxNorm),
        grid: gateSize(spec.n),
        access: reads(2),
      };
    case "random": {
      const { grid, nx } = threads(spec.n);
      return {
        code: randomShader(spec.dist, spec.n, spec.a, spec.b, nx),
        grid,
        access: reads(2),
      };
    }
    case "lstmStep": {
      const { grid, nx } = threads(spec.b * spec.h);
      const n = spec.masked ? 1 : 0;
      return spec.backward
        ? {
          code: lstmBackwardShader(spec, nx),
          grid,
          access: [...new Array(5 + n).fill("read"), "read_write", "read_write"] as Access[],
        }
        : { code: lstmForwardShader(spec, nx), grid, access: reads(4 + n) };
    }
    case "categorical": {
      const { grid, nx } = threads(spec.rows);
      return {
        code: categoricalShader(spec.rows, spec.k, nx, spec.rowSeeds),
        grid,
        access: reads(spec.rowSeeds ? 4 : 3),
      };
    }
  }
}

/** Throws unless `spec` may be gated (its kernel is correct for any dispatch size). */
export function checkGateable(spec: KernelSpec): void {
  if (!GATEABLE.has(spec.kind)) {
    throw new Error(`kernel '${spec.kind}' cannot be gated (only ${[...GATEABLE].join(", ")})`);
  }
}
