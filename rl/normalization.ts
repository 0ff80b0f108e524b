/**
 * Feature normalization ({@link FeatureNormalizer}): none, a per-feature affine map, or running
 * mean/std, described by a plain {@link NormalizationSpec} that is saved with the controller
 * ({@link FeatureSpec}). Nothing here reads the GPU back while normalizing.
 * @module
 */

import { tensor, variance } from "../tensor/functional.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../tensor/tensor.ts";

/** Features used as they are. */
export interface NoNormalization {
  /** Kind tag. */
  kind: "none";
}

/** A fixed per-feature affine map: `(x - shift) * scale`. */
export interface AffineNormalization {
  /** Kind tag. */
  kind: "affine";
  /** Subtracted per feature (length K). */
  shift: number[];
  /** Multiplied per feature after the shift (length K). */
  scale: number[];
}

/**
 * Running mean/std (as CleanRL's `NormalizeObservation`): `clip((x - mean) / sqrt(var + eps))`.
 * The statistics are updated from rollout batches by the trainers (never inside a rollout, so
 * a rollout and its update see the same map) and frozen when `frozen` is set.
 */
export interface RunningNormalization {
  /** Kind tag. */
  kind: "running";
  /** Running mean per feature (length K). */
  mean: number[];
  /** Running (biased) variance per feature (length K). */
  var: number[];
  /** Samples seen (starts at 1e-4, as CleanRL's RunningMeanStd). */
  count: number;
  /** Added to the variance (default 1e-8). */
  eps?: number;
  /** Normalized values are clipped to [-clip, clip] (default 10). */
  clip?: number;
  /** When true, `update()` leaves the statistics alone (evaluation and transfer). */
  frozen?: boolean;
}

/** How features are normalized before the controller sees them (serializable). */
export type NormalizationSpec = NoNormalization | AffineNormalization | RunningNormalization;

/** A feature vector's description: names in order plus normalization. Saved with controllers. */
export interface FeatureSpec {
  /** Feature names, in the order of the feature vector. */
  names: string[];
  /** The normalization the controller applies to them. */
  normalization: NormalizationSpec;
}

/** A running normalization with no statistics yet (mean 0, var 1). */
export function runningNormalization(size: number, clip = 10): RunningNormalization {
  return {
    kind: "running",
    mean: new Array(size).fill(0),
    var: new Array(size).fill(1),
    count: 1e-4,
    eps: 1e-8,
    clip,
  };
}

/** Problems with `spec` as a normalization of `size` features (empty when valid). */
export function normalizationProblems(spec: unknown, size: number): string[] {
  const s = spec as Record<string, unknown> | null;
  if (!s || typeof s !== "object") return ["normalization must be an object"];
  const vec = (key: string): string[] => {
    const v = s[key];
    if (!Array.isArray(v) || v.length !== size || v.some((x) => typeof x !== "number")) {
      return [`normalization.${key} must be ${size} numbers`];
    }
    return [];
  };
  switch (s.kind) {
    case "none":
      return [];
    case "affine":
      return [...vec("shift"), ...vec("scale")];
    case "running": {
      const out = [...vec("mean"), ...vec("var")];
      if (typeof s.count !== "number" || !(s.count > 0)) {
        out.push("normalization.count must be > 0");
      }
      return out;
    }
    default:
      return [`normalization.kind must be "none", "affine" or "running", got '${s.kind}'`];
  }
}

/**
 * Applies a {@link NormalizationSpec} on the GPU and, for running statistics, updates them from
 * batches of features. The statistics live on the GPU; {@link FeatureNormalizer.toSpec} reads
 * them back (once, when saving).
 */
export class FeatureNormalizer {
  /** Number of features K. */
  readonly size: number;
  /** The normalization kind. */
  readonly kind: NormalizationSpec["kind"];
  /** Running statistics are not updated when true. */
  frozen: boolean;
  #shift: Tensor | null = null;
  #scale: Tensor | null = null;
  #count = 0;
  #eps = 1e-8;
  #clip = 10;
  #mean: Tensor | null = null;
  #var: Tensor | null = null;

  /** Uploads `spec` for `size` features; throws listing every problem with the spec. */
  constructor(spec: NormalizationSpec, size: number) {
    const problems = normalizationProblems(spec, size);
    if (problems.length) throw new Error(`invalid feature normalization: ${problems.join("; ")}`);
    this.size = size;
    this.kind = spec.kind;
    this.frozen = spec.kind === "running" && spec.frozen === true;
    if (spec.kind === "affine") {
      this.#shift = keep(tensor(spec.shift, [size]));
      this.#scale = keep(tensor(spec.scale, [size]));
    } else if (spec.kind === "running") {
      this.#mean = keep(tensor(spec.mean, [size]));
      this.#var = keep(tensor(spec.var, [size]));
      this.#count = spec.count;
      this.#eps = spec.eps ?? 1e-8;
      this.#clip = spec.clip ?? 10;
      this.#refreshAffine();
    }
  }

  /** Running statistics as an affine map: shift = mean, scale = 1 / sqrt(var + eps). */
  #refreshAffine(): void {
    const scale = noGrad(() => tidy(() => this.#var!.add(this.#eps).sqrt().pow(-1)));
    this.#shift?.dispose();
    this.#scale?.dispose();
    this.#shift = keep(this.#mean!.view([this.size], "normalizer.mean"));
    this.#scale = keep(scale);
  }

  /** The normalized features for x [..., K] (x itself when the kind is "none"). */
  apply(x: Tensor): Tensor {
    if (this.kind === "none") return x;
    const y = x.sub(this.#shift!).mul(this.#scale!);
    return this.kind === "running" ? y.clamp(-this.#clip, this.#clip) : y;
  }

  /**
   * Folds a batch x [N, K] into the running statistics (parallel-variance update, on the GPU).
   * No-op unless the kind is "running" and the normalizer is not frozen.
   */
  update(x: Tensor): void {
    if (this.kind !== "running" || this.frozen) return;
    const k = this.size;
    const batch = x.reshape([-1, k]);
    const n = batch.shape[0];
    if (n === 0) return;
    const c = this.#count;
    const tot = c + n;
    const [mean, vari] = noGrad(() =>
      tidy(() => {
        // The weights change every update: upload them (a baked constant would compile a new
        // kernel each time).
        const [wn, wc, wcn] = [n / tot, c / tot, (c * n) / (tot * tot)].map((v) =>
          tensor(new Float32Array([v]))
        );
        const bm = batch.mean(0);
        const bv = variance(batch, 0);
        const delta = bm.sub(this.#mean!);
        const m = this.#mean!.add(delta.mul(wn));
        const v = this.#var!.mul(wc).add(bv.mul(wn)).add(delta.square().mul(wcn));
        return [m, v];
      })
    );
    this.#mean!.dispose();
    this.#var!.dispose();
    this.#mean = keep(mean);
    this.#var = keep(vari);
    this.#count = tot;
    this.#refreshAffine();
  }

  /** The current normalization as a plain spec (reads running statistics back once). */
  async toSpec(): Promise<NormalizationSpec> {
    if (this.kind === "none") return { kind: "none" };
    if (this.kind === "affine") {
      const [shift, scale] = await readMany([this.#shift!, this.#scale!]);
      return { kind: "affine", shift: Array.from(shift), scale: Array.from(scale) };
    }
    const [mean, vari] = await readMany([this.#mean!, this.#var!]);
    return {
      kind: "running",
      mean: Array.from(mean),
      var: Array.from(vari),
      count: this.#count,
      eps: this.#eps,
      clip: this.#clip,
      ...(this.frozen ? { frozen: true } : {}),
    };
  }

  /** Frees the GPU statistics. */
  dispose(): void {
    for (const t of [this.#shift, this.#scale, this.#mean, this.#var]) t?.dispose();
  }
}

// ---------------------------------------------------------------- small helpers
