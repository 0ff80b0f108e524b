/**
 * Parameter initializers. Each returns a new tensor drawn from the given generator (the default
 * generator when omitted), so a model built after `manualSeed(s)` is reproducible.
 * @module
 */

import type { Generator } from "../gpu/random.ts";
import { rand, randn, tensor, zeros } from "../tensor/functional.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** Fan-in and fan-out of a weight shape ([out, in] or [out, in, kh, kw]). */
export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: (shape[1] ?? 1) * receptive, fanOut: shape[0] * receptive };
}

/** Glorot/Xavier uniform: U(-a, a) with a = gain * sqrt(6 / (fanIn + fanOut)). */
export function glorotUniform(shape: readonly number[], gain = 1, gen?: Generator): Tensor {
  const { fanIn, fanOut } = fans(shape);
  const a = gain * Math.sqrt(6 / (fanIn + fanOut));
  return rand(shape, -a, a, gen);
}

/** Kaiming/He normal: N(0, gain / sqrt(fanIn)) with gain sqrt(2) for ReLU. */
export function kaimingNormal(
  shape: readonly number[],
  gain = Math.SQRT2,
  gen?: Generator,
): Tensor {
  return randn(shape, 0, gain / Math.sqrt(fans(shape).fanIn), gen);
}

/** Kaiming uniform as PyTorch's Linear/Conv default: U(-1/sqrt(fanIn), 1/sqrt(fanIn)). */
export function kaimingUniform(shape: readonly number[], gen?: Generator): Tensor {
  const a = 1 / Math.sqrt(fans(shape).fanIn);
  return rand(shape, -a, a, gen);
}

/** Normal(mean, std): DCGAN uses N(0, 0.02). */
export function normal(shape: readonly number[], std = 0.02, mean = 0, gen?: Generator): Tensor {
  return randn(shape, mean, std, gen);
}

/** Truncated normal: N(0, std) redrawn outside 2 std (the authors' classification init). */
export function truncatedNormal(shape: readonly number[], std: number, seed = 0): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return ((s ^ (s >>> 13)) >>> 0) / 4294967296;
  };
  for (let i = 0; i < n; i++) {
    let v: number;
    do {
      v = Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
    } while (Math.abs(v) > 2);
    out[i] = v * std;
  }
  return tensor(out, shape);
}

/**
 * Orthogonal init (PPO networks): a (semi-)orthogonal matrix scaled by `gain`, computed on the
 * host by Gram-Schmidt from seeded normals. Shapes beyond 2-D are flattened to [out, rest].
 */
export function orthogonal(shape: readonly number[], gain = 1, seed = 0): Tensor {
  const rows = shape[0];
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  const tall = rows >= cols;
  const [r, c] = tall ? [rows, cols] : [cols, rows];
  let s = (seed * 2654435761) >>> 0;
  const next = () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return ((s ^ (s >>> 13)) >>> 0) / 4294967296;
  };
  // Columns of an r x c matrix (r >= c), orthonormalized.
  const q: Float64Array[] = [];
  for (let j = 0; j < c; j++) {
    const v = Float64Array.from(
      { length: r },
      () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next()),
    );
    for (const u of q) {
      let d = 0;
      for (let i = 0; i < r; i++) d += u[i] * v[i];
      for (let i = 0; i < r; i++) v[i] -= d * u[i];
    }
    let norm = 0;
    for (let i = 0; i < r; i++) norm += v[i] * v[i];
    norm = Math.sqrt(norm) || 1;
    for (let i = 0; i < r; i++) v[i] /= norm;
    q.push(v);
  }
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) out[i * cols + j] = gain * (tall ? q[j][i] : q[i][j]);
  }
  return tensor(out, shape);
}

/** A zero-filled parameter (biases). */
export function zerosInit(shape: readonly number[]): Tensor {
  return zeros(shape);
}
