/**
 * Synthetic binary classification data for the MLP task (paper section 5.1.1, appendix A.2 and
 * Table 2; the authors' `dataio/gen_cls_data.py`).
 *
 * - {@link makeClassification}: a port of the algorithm of scikit-learn's `make_classification`
 *   (0.20): cluster centroids on distinct vertices of a hypercube (side `2 * classSep`), several
 *   clusters per class, each a standard normal blob through a random covariance, then redundant
 *   features (random linear combinations of the informative ones), repeated features, useless
 *   standard normal features, label flips (`flipY` of the labels redrawn at random), shift and
 *   scale, then a shuffle of the samples and of the columns. The random stream is ours (see
 *   rng.ts), not numpy's, so the numbers differ from sklearn's while the distribution matches.
 * - {@link makePaperClassification}: the appendix A.2 recipe (four hypercube centers, two per
 *   class; the first 5% of the dimensions informative, the next 5% random linear combinations of
 *   them, the rest noise; no label noise, no shuffle).
 * - {@link makeClassificationData}: a {@link ClassificationSpec} drawn once and split into the
 *   five partitions in order (authors: 200 / 1000 / 200 / 1000 / 1000 of 3400 samples).
 * - {@link TRANSFER_SPECS}: the four distributions of Table 2 (the first trains the controller).
 * @module
 */

import { type PartitionName, PARTITIONS } from "./regression.ts";
import { Rng } from "./rng.ts";

/** Examples with row-major inputs x [n, d] and i32 class labels y [n]. */
export interface ClassificationSplit {
  /** Inputs, row-major [n, d]. */
  x: Float32Array;
  /** Class labels [n]. */
  y: Int32Array;
  /** Number of examples. */
  n: number;
  /** Input dimension. */
  d: number;
}

/** Which output columns hold which kind of feature (after the column shuffle). */
export interface ColumnRoles {
  /** Informative columns. */
  informative: number[];
  /** Linear combinations of the informative columns. */
  redundant: number[];
  /** Copies of informative or redundant columns. */
  repeated: number[];
  /** Pure noise columns. */
  useless: number[];
}

/** A generated set with its column roles. */
export interface GeneratedClassification extends ClassificationSplit {
  /** Column roles. */
  roles: ColumnRoles;
}

/** Options of {@link makeClassification} (sklearn's names, camel-cased). */
export interface MakeClassificationOptions {
  /** Number of samples. */
  nSamples: number;
  /** Total features (default 20). */
  nFeatures?: number;
  /** Informative features (default 2). */
  nInformative?: number;
  /** Redundant features (default 2). */
  nRedundant?: number;
  /** Repeated features (default 0). */
  nRepeated?: number;
  /** Classes (default 2). */
  nClasses?: number;
  /** Clusters per class (default 2). */
  nClustersPerClass?: number;
  /** Class proportions (default balanced). */
  weights?: readonly number[];
  /** Fraction of labels redrawn uniformly at random (default 0.01). */
  flipY?: number;
  /** Half the hypercube side (default 1). */
  classSep?: number;
  /** Centroids on hypercube vertices (default true); otherwise on a random polytope. */
  hypercube?: boolean;
  /** Added to every feature; null draws U[-classSep, classSep] per feature (default 0). */
  shift?: number | null;
  /** Multiplies every feature; null draws 1 + 100 U[0, 1) per feature (default 1). */
  scale?: number | null;
  /** Shuffle samples and columns (default true). */
  shuffle?: boolean;
  /** Seed (default 1). */
  seed?: number;
}

/** `count` distinct vertices of the {0,1}^dims hypercube (sklearn's `_generate_hypercube`). */
function hypercubeVertices(count: number, dims: number, rng: Rng): number[][] {
  if (dims > 30) {
    const head = Array.from(
      { length: count },
      () => Array.from({ length: dims - 30 }, () => rng.int(2)),
    );
    const tail = hypercubeVertices(count, 30, rng);
    return head.map((h, i) => [...h, ...tail[i]]);
  }
  if (count > 2 ** dims) {
    throw new Error(
      `make_classification: ${count} clusters need more than ${dims} informative dims`,
    );
  }
  return rng.sampleWithoutReplacement(2 ** dims, count).map((v) =>
    Array.from({ length: dims }, (_, j) => (v >>> (dims - 1 - j)) & 1)
  );
}

/** Generates a classification problem with sklearn's `make_classification` algorithm. */
export function makeClassification(opts: MakeClassificationOptions): GeneratedClassification {
  const n = opts.nSamples;
  const d = opts.nFeatures ?? 20;
  const ni = opts.nInformative ?? 2;
  const nr = opts.nRedundant ?? 2;
  const nrep = opts.nRepeated ?? 0;
  const nc = opts.nClasses ?? 2;
  const cpc = opts.nClustersPerClass ?? 2;
  const sep = opts.classSep ?? 1;
  const nu = d - ni - nr - nrep;
  if (nu < 0) throw new Error("make_classification: informative + redundant + repeated > features");
  if (nc * cpc > 2 ** ni) {
    throw new Error(
      `make_classification: ${nc} classes x ${cpc} clusters need 2^informative >= ${nc * cpc}`,
    );
  }
  const rng = new Rng(opts.seed ?? 1);
  const weights = opts.weights ?? Array.from({ length: nc }, () => 1 / nc);
  const clusters = nc * cpc;
  const perCluster = Array.from(
    { length: clusters },
    (_, k) => Math.floor((n * weights[k % nc]) / cpc),
  );
  for (let i = 0, rest = n - perCluster.reduce((a, b) => a + b, 0); i < rest; i++) {
    perCluster[i % clusters]++;
  }
  const X = Array.from({ length: n }, () => new Float64Array(d));
  const y = new Int32Array(n);
  // Centroids on hypercube vertices scaled to [-sep, sep].
  const centroids = hypercubeVertices(clusters, ni, rng).map((v) =>
    v.map((b) => b * 2 * sep - sep)
  );
  if (opts.hypercube === false) {
    const rowScale = centroids.map(() => rng.uniform());
    const colScale = Array.from({ length: ni }, () => rng.uniform());
    centroids.forEach((c, k) => c.forEach((_, j) => (c[j] *= rowScale[k] * colScale[j])));
  }
  for (const row of X) for (let j = 0; j < ni; j++) row[j] = rng.normal();
  // Each cluster: random covariance, then shift to its vertex.
  let start = 0;
  centroids.forEach((centroid, k) => {
    const stop = start + perCluster[k];
    const A = Array.from(
      { length: ni },
      () => Array.from({ length: ni }, () => 2 * rng.uniform() - 1),
    );
    for (let r = start; r < stop; r++) {
      y[r] = k % nc;
      const src = X[r].slice(0, ni);
      for (let j = 0; j < ni; j++) {
        let v = 0;
        for (let q = 0; q < ni; q++) v += src[q] * A[q][j];
        X[r][j] = v + centroid[j];
      }
    }
    start = stop;
  });
  if (nr > 0) {
    const B = Array.from(
      { length: ni },
      () => Array.from({ length: nr }, () => 2 * rng.uniform() - 1),
    );
    for (const row of X) {
      for (let j = 0; j < nr; j++) {
        let v = 0;
        for (let q = 0; q < ni; q++) v += row[q] * B[q][j];
        row[ni + j] = v;
      }
    }
  }
  if (nrep > 0) {
    const m = ni + nr;
    const idx = Array.from({ length: nrep }, () => Math.trunc((m - 1) * rng.uniform() + 0.5));
    for (const row of X) idx.forEach((src, j) => (row[m + j] = row[src]));
  }
  for (const row of X) for (let j = d - nu; j < d; j++) row[j] = rng.normal();
  const flipY = opts.flipY ?? 0.01;
  if (flipY >= 0) {
    const flip = Array.from({ length: n }, () => rng.uniform() < flipY);
    flip.forEach((f, r) => {
      if (f) y[r] = rng.int(nc);
    });
  }
  const shift = opts.shift === undefined
    ? Array(d).fill(0)
    : opts.shift === null
    ? Array.from({ length: d }, () => (2 * rng.uniform() - 1) * sep)
    : Array(d).fill(opts.shift);
  const scale = opts.scale === undefined
    ? Array(d).fill(1)
    : opts.scale === null
    ? Array.from({ length: d }, () => 1 + 100 * rng.uniform())
    : Array(d).fill(opts.scale);
  for (const row of X) for (let j = 0; j < d; j++) row[j] = (row[j] + shift[j]) * scale[j];
  let rows = Array.from({ length: n }, (_, i) => i);
  let cols = Array.from({ length: d }, (_, j) => j);
  if (opts.shuffle ?? true) {
    rows = Array.from(rng.permutation(n));
    cols = Array.from(rng.permutation(d));
  }
  const x = new Float32Array(n * d);
  const yy = new Int32Array(n);
  rows.forEach((src, r) => {
    yy[r] = y[src];
    cols.forEach((c, j) => (x[r * d + j] = X[src][c]));
  });
  // Output column j holds original column cols[j].
  const roleOf = (lo: number, hi: number) => cols.flatMap((c, j) => (c >= lo && c < hi ? [j] : []));
  return {
    x,
    y: yy,
    n,
    d,
    roles: {
      informative: roleOf(0, ni),
      redundant: roleOf(ni, ni + nr),
      repeated: roleOf(ni + nr, ni + nr + nrep),
      useless: roleOf(ni + nr + nrep, d),
    },
  };
}

/** Options of {@link makePaperClassification}. */
export interface PaperClassificationOptions {
  /** Number of samples. */
  nSamples: number;
  /** Dimensions d (default 32). */
  nFeatures?: number;
  /** Fraction of informative dimensions, and of redundant ones (default 0.05). */
  informativeFraction?: number;
  /** Seed (default 1). */
  seed?: number;
}

/**
 * The paper's appendix A.2 recipe: four centers on distinct hypercube vertices (coordinates
 * +-1) in the informative dimensions, two per class; per sample a label v ~ {0, 1}, a center of
 * its class, `u1 = C + N(0, I)` (the first 5% of dimensions), `u2` = random linear combinations
 * of u1 (the next 5%, weights U[-1, 1]), `u3 ~ N(0, I)` (the rest).
 */
export function makePaperClassification(opts: PaperClassificationOptions): GeneratedClassification {
  const n = opts.nSamples;
  const d = opts.nFeatures ?? 32;
  const frac = opts.informativeFraction ?? 0.05;
  const ni = Math.max(2, Math.round(frac * d));
  const nr = ni;
  const rng = new Rng(opts.seed ?? 1);
  const centers = hypercubeVertices(4, ni, rng).map((v) => v.map((b) => 2 * b - 1));
  const B = Array.from(
    { length: ni },
    () => Array.from({ length: nr }, () => 2 * rng.uniform() - 1),
  );
  const x = new Float32Array(n * d);
  const y = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    const label = rng.int(2);
    y[r] = label;
    const center = centers[(label === 1 ? 0 : 2) + rng.int(2)];
    const u1 = center.map((c) => c + rng.normal());
    const row = r * d;
    u1.forEach((v, j) => (x[row + j] = v));
    for (let j = 0; j < nr; j++) {
      let v = 0;
      for (let q = 0; q < ni; q++) v += u1[q] * B[q][j];
      x[row + ni + j] = v;
    }
    for (let j = ni + nr; j < d; j++) x[row + j] = rng.normal();
  }
  const range = (lo: number, hi: number) => Array.from({ length: hi - lo }, (_, i) => lo + i);
  return {
    x,
    y,
    n,
    d,
    roles: {
      informative: range(0, ni),
      redundant: range(ni, ni + nr),
      repeated: [],
      useless: range(ni + nr, d),
    },
  };
}

/** A named data distribution: which generator and its options (sample count excluded). */
export type ClassificationSpec =
  | {
    /** Display name. */
    name: string;
    /** sklearn's algorithm. */
    generator: "sklearn";
    /** Its options. */
    options: Omit<MakeClassificationOptions, "nSamples">;
  }
  | {
    /** Display name. */
    name: string;
    /** The paper's appendix A.2 recipe. */
    generator: "paper";
    /** Its options. */
    options: Omit<PaperClassificationOptions, "nSamples">;
  };

/** The authors' data set: 32 features, 2 informative, 2 redundant, 2 clusters/class, seed 1. */
export const AUTHORS_SPEC: ClassificationSpec = {
  name: "authors",
  generator: "sklearn",
  options: {
    nFeatures: 32,
    nInformative: 2,
    nRedundant: 2,
    nClustersPerClass: 2,
    flipY: 0.01,
    classSep: 1,
    seed: 1,
  },
};

/** The paper's appendix A.2 data set (32 dimensions, seed 1). */
export const PAPER_SPEC: ClassificationSpec = {
  name: "paper-a2",
  generator: "paper",
  options: { nFeatures: 32, informativeFraction: 0.05, seed: 1 },
};

/**
 * The four distributions of Table 2. #0 is the authors' set (the controller is trained on it);
 * #1-#3 differ in seed (cluster covariances, redundant mixing, column order) and in one or two
 * knobs each, at a similar difficulty.
 */
export const TRANSFER_SPECS: readonly ClassificationSpec[] = [
  AUTHORS_SPEC,
  {
    name: "transfer-1",
    generator: "sklearn",
    options: { ...AUTHORS_SPEC.options, seed: 2 },
  },
  {
    name: "transfer-2",
    generator: "sklearn",
    options: { ...AUTHORS_SPEC.options, nInformative: 3, nRedundant: 1, classSep: 1.2, seed: 3 },
  },
  {
    name: "transfer-3",
    generator: "sklearn",
    options: { ...AUTHORS_SPEC.options, nRepeated: 2, classSep: 0.9, flipY: 0.02, seed: 4 },
  },
];

/** A classification data set split into the five partitions. */
export interface ClassificationData {
  /** The spec it was drawn from. */
  spec: ClassificationSpec;
  /** Column roles. */
  roles: ColumnRoles;
  /** The partitions by name. */
  partitions: Record<PartitionName, ClassificationSplit>;
}

/** Rows [start, end) of a split. */
export function sliceRows(s: ClassificationSplit, start: number, end: number): ClassificationSplit {
  return {
    x: s.x.slice(start * s.d, end * s.d),
    y: s.y.slice(start, end),
    n: end - start,
    d: s.d,
  };
}

/**
 * Draws `spec` once with `sum(sizes)` samples (default 200 / 1000 / 200 / 1000 / 1000) and cuts
 * it into the five partitions in order, as the authors did.
 */
export function makeClassificationData(
  spec: ClassificationSpec,
  sizes: readonly number[] = [200, 1000, 200, 1000, 1000],
): ClassificationData {
  if (sizes.length !== PARTITIONS.length) {
    throw new Error(`makeClassificationData: need ${PARTITIONS.length} partition sizes`);
  }
  const total = sizes.reduce((a, b) => a + b, 0);
  const all = spec.generator === "sklearn"
    ? makeClassification({ ...spec.options, nSamples: total })
    : makePaperClassification({ ...spec.options, nSamples: total });
  const partitions = {} as Record<PartitionName, ClassificationSplit>;
  let at = 0;
  PARTITIONS.forEach((name, i) => {
    partitions[name] = sliceRows(all, at, at + sizes[i]);
    at += sizes[i];
  });
  return { spec, roles: all.roles, partitions };
}

/** Joins splits row-wise. */
export function concatClassification(...splits: ClassificationSplit[]): ClassificationSplit {
  const d = splits[0].d;
  if (splits.some((s) => s.d !== d)) throw new Error("concatClassification: dimensions differ");
  const n = splits.reduce((a, s) => a + s.n, 0);
  const x = new Float32Array(n * d);
  const y = new Int32Array(n);
  let at = 0;
  for (const s of splits) {
    x.set(s.x, at * d);
    y.set(s.y, at);
    at += s.n;
  }
  return { x, y, n, d };
}
