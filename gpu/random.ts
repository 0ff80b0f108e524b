/**
 * Counter-based random numbers: element i of draw number `stream` under `seed` is a pure
 * function of (seed, stream, i), so results are reproducible from a seed, independent of dispatch
 * order and of how many threads run, and the same on every backend (the integer hash is exact;
 * normal draws go through each backend's own log/cos). A generator is a (seed, stream) pair;
 * each draw uses the next stream number.
 * @module
 */

import type { Backend, BufferRef } from "./backend.ts";
import type { RandomKind } from "./kernel.ts";

/** A reproducible random stream: the state is two integers, saved with checkpoints. */
export class Generator {
  /** The seed. */
  seed: number;
  /** Draws made so far; the next draw uses this as its stream number. */
  counter: number;

  /** Creates a generator from a 32-bit seed. */
  constructor(seed: number, counter = 0) {
    this.seed = seed >>> 0;
    this.counter = counter;
  }

  /** The state, for checkpoints. */
  state(): { seed: number; counter: number } {
    return { seed: this.seed, counter: this.counter };
  }

  /** Restores a state from {@link Generator.state}. */
  setState(s: { seed: number; counter: number }): void {
    this.seed = s.seed >>> 0;
    this.counter = s.counter;
  }

  /** Uploads the params buffer for the next draw (a fresh 8-byte storage). */
  nextParams(be: Backend): BufferRef {
    const storage = be.alloc(8);
    be.write(storage, new Uint32Array([this.seed, this.counter++ >>> 0]));
    return { storage, offset: 0, numel: 2 };
  }
}

/**
 * Fills `out` (f32) from a distribution: uniform in [a, b), normal(mean a, std b), or
 * bernoulli(p = a) as 0/1.
 */
export function runRandom(
  be: Backend,
  gen: Generator,
  dist: RandomKind,
  out: BufferRef,
  a: number,
  b: number,
): void {
  const params = gen.nextParams(be);
  if (out.numel > 0) be.run({ kind: "random", dist, n: out.numel, a, b }, [params, out]);
  be.release(params.storage);
}

/**
 * Draws one category per row of non-negative weights `probs` [rows, k] into i32 `out` [rows] by
 * inverse CDF. With `seeds` (u32 or i32 [rows]), row r draws element 0 of the stream under
 * `seeds[r]` instead of element r under the generator's seed: a row's draw then depends only on
 * its own seed and the stream number, not on its position or on how many rows there are.
 */
export function runCategorical(
  be: Backend,
  gen: Generator,
  probs: BufferRef,
  rows: number,
  k: number,
  out: BufferRef,
  seeds?: BufferRef,
): void {
  const params = gen.nextParams(be);
  if (rows > 0) {
    be.run(
      { kind: "categorical", rows, k, rowSeeds: seeds !== undefined },
      seeds ? [params, seeds, probs, out] : [params, probs, out],
    );
  }
  be.release(params.storage);
}
