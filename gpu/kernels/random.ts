/**
 * Host side of the counter-based RNG: a generator is a (seed, stream) pair; each draw uses the
 * next stream number, so a sequence of draws is reproducible from the seed.
 * @module
 */

import type { Backend } from "../backend.ts";
import { foldGrid, WG } from "../shaders/common.ts";
import { categoricalShader, type RandomKind, randomShader } from "../shaders/random.ts";
import { bind, type BufferRef } from "./buffer_ref.ts";

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

/** Fills `out` (f32) from a distribution; see {@link randomShader} for `a`, `b`. */
export function runRandom(
  be: Backend,
  gen: Generator,
  kind: RandomKind,
  out: BufferRef,
  a: number,
  b: number,
): void {
  const params = gen.nextParams(be);
  if (out.numel > 0) {
    const { grid, nx } = foldGrid(Math.ceil(out.numel / WG));
    be.run(
      { code: randomShader(kind, out.numel, a, b, nx), name: `random_${kind}` },
      [bind(params, "read"), bind(out, "read_write")],
      grid,
    );
  }
  be.release(params.storage);
}

/**
 * Draws one category per row of `probs` [rows, k] into i32 `out` [rows]. With `seeds` (u32 or
 * i32 [rows]), row r uses `seeds[r]` in place of the generator's seed (see
 * {@link categoricalShader}); the generator still supplies and advances the stream number.
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
    const { grid, nx } = foldGrid(Math.ceil(rows / WG));
    be.run(
      { code: categoricalShader(rows, k, nx, seeds !== undefined), name: "categorical" },
      [
        bind(params, "read"),
        ...(seeds ? [bind(seeds, "read")] : []),
        bind(probs, "read"),
        bind(out, "read_write"),
      ],
      grid,
    );
  }
  be.release(params.storage);
}
