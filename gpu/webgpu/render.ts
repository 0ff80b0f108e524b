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
import { elementGroups, foldGrid, numel, WG } from "./shaders/common.ts";
import { mapIsVec4, mapShader, placeShader } from "./shaders/elementwise.ts";
import {
  type BlockConfig,
  blockTile,
  LARGE_BLOCK,
  matmulBlockedShader,
  matmulSimpleShader,
  SMALL_BLOCK,
} from "./shaders/matmul.ts";
import { reduceShader } from "./shaders/reduce.ts";
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

/** A rendered kernel. */
export interface Rendered {
  /** WGSL source with entry point `main`. */
  code: string;
  /** Workgroup counts of a direct dispatch. */
  grid: [number, number, number];
  /** Access of each buffer, in the spec's order. */
  access: Access[];
}

/** Which matmul kernel a product uses on WebGPU. */
export type MatmulVariant = "blocked" | "simple";

/** Chooses the matmul variant (exported for benchmarks and tests). */
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

let matmulOverride: { variant: MatmulVariant; block: BlockConfig } | null = null;

/** Forces a matmul variant and tile (tests and benchmarks); `null` restores the automatic choice. */
export function forceMatmul(v: { variant: MatmulVariant; block?: BlockConfig } | null): void {
  matmulOverride = v && { variant: v.variant, block: v.block ?? SMALL_BLOCK };
}

/** The override in force, as part of cache keys (forcing must not reuse another variant's code). */
export function matmulOverrideKey(): string {
  return matmulOverride ? JSON.stringify(matmulOverride) : "";
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
      const groups = mapIsVec4(spec.shape, spec.inputs) ? Math.ceil(n / 4 / WG) : elementGroups(n);
      const { grid, nx } = foldGrid(groups);
      return {
        code: mapShader(spec.expr, spec.shape, spec.inputs, spec.out, nx),
        grid,
        access: reads(spec.inputs.length + 1),
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
      // Long rows and few outputs: a workgroup per output keeps all lanes busy.
      const perGroup = nRed >= 256 && nOut < 4096;
      const { grid, nx } = foldGrid(perGroup ? nOut : Math.ceil(nOut / WG));
      return {
        code: reduceShader(spec.op, plan, spec.expr, spec.inputs, nx, perGroup),
        grid,
        access: reads(spec.inputs.length + 1),
      };
    }
    case "matmul": {
      const variant = matmulOverride?.variant ?? matmulVariant(spec);
      if (variant === "blocked") {
        const block = matmulOverride?.block ?? chooseBlock(spec);
        const [tn, tm] = blockTile(block);
        return {
          code: matmulBlockedShader(spec, block),
          grid: [Math.ceil(spec.n / tn), Math.ceil(spec.m / tm), spec.batch],
          access: reads(3),
        };
      }
      const { grid, nx } = threads(spec.batch * spec.m * spec.n);
      return { code: matmulSimpleShader(spec, nx), grid, access: reads(3) };
    }
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
    case "norm":
      return {
        code: normShader(spec.start, spec.n, spec.outIndex),
        grid: [1, 1, 1],
        access: reads(2),
      };
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
