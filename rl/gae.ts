/**
 * Generalized advantage estimation (Schulman et al., 2016) on the GPU, with CleanRL's conventions:
 *
 *     nextnonterminal_t = 1 - dones[t+1]        (1 - nextDone for the last step)
 *     nextvalue_t       = values[t+1]           (nextValue, the bootstrap, for the last step)
 *     delta_t = r_t + gamma * nextvalue_t * nextnonterminal_t - values[t]
 *     A_t     = delta_t + gamma * lambda * nextnonterminal_t * A_{t+1}
 *     returns = A + values
 *
 * `dones[t]` flags that observation t is the first of a new episode (the previous step ended one).
 *
 * The backward recursion `y_t = x_t + c_t * y_{t+1}` is a linear scan, computed by recursive
 * doubling in ceil(log2 T) rounds of whole-tensor ops (shift, multiply, add) rather than T
 * sequential steps: about 7 dispatches a round, independent of P, and no host sync.
 * {@link gaeHost} is the plain loop, for tests.
 * @module
 */

import * as ops from "../tensor/ops.ts";
import { noGrad, type Tensor, tidy } from "../tensor/tensor.ts";

/** Rows shifted up by `s` along dim 0: out[t] = x[t + s], zero past the end. */
function shiftUp(x: Tensor, s: number): Tensor {
  const t = x.shape[0];
  if (s >= t) return x.mul(0);
  const rest = x.shape.slice(1);
  const tail = ops.slice(x, [s, ...rest.map(() => 0)], [t, ...rest]);
  return ops.pad(tail, [[0, s], ...rest.map(() => [0, 0] as [number, number])]);
}

/**
 * The reverse linear scan `y_t = x_t + coef_t * y_{t+1}` (y_T = 0) along dim 0 of x and coef
 * ([T, ...], same shape), by recursive doubling: after the round with shift s, `d_t` sums the
 * terms t .. t+2s-1 and `c_t` is the product of coef over the same span.
 */
export function reverseScan(coef: Tensor, x: Tensor): Tensor {
  if (coef.shape.length !== x.shape.length || coef.shape.some((d, i) => d !== x.shape[i])) {
    throw new Error(`reverseScan: coef ${coef.describe()} and x ${x.describe()} must match`);
  }
  return noGrad(() =>
    tidy(() => {
      const t = x.shape[0];
      let d = x;
      let c = coef;
      for (let s = 1; s < t; s *= 2) {
        d = d.add(c.mul(shiftUp(d, s)));
        if (2 * s < t) c = c.mul(shiftUp(c, s));
      }
      return d === x ? x.add(0) : d;
    })
  );
}

/** Inputs of {@link gae}: [T, P] tensors for the segment plus the bootstrap [P]. */
export interface GaeInputs {
  /** r_t, [T, P]. */
  rewards: Tensor;
  /** V(x_t) from the rollout, [T, P]. */
  values: Tensor;
  /** 1 where observation t starts a new episode, [T, P]. */
  dones: Tensor;
  /** V of the observation after the segment, [P]. */
  nextValue: Tensor;
  /** Whether that observation starts a new episode, [P]. */
  nextDone: Tensor;
  /** Discount gamma. */
  gamma: number;
  /** GAE lambda. */
  lambda: number;
}

/** Advantages and returns ([T, P] each) by GAE; see the module doc. */
export function gae(inp: GaeInputs): { advantages: Tensor; returns: Tensor } {
  const [t, p] = inp.rewards.shape;
  for (const [name, x] of [["values", inp.values], ["dones", inp.dones]] as const) {
    if (x.shape[0] !== t || x.size !== t * p) {
      throw new Error(`gae: ${name} ${x.describe()} must be [${t}, ${p}] like the rewards`);
    }
  }
  return noGrad(() =>
    tidy(() => {
      const row = (x: Tensor) => x.reshape([1, p]);
      const values = inp.values.reshape([t, p]);
      const dones = inp.dones.reshape([t, p]);
      const later = (x: Tensor, last: Tensor) =>
        t > 1 ? ops.concat([ops.slice(x, [1, 0], [t, p]), row(last)], 0) : row(last);
      const nextNonTerminal = later(dones, inp.nextDone).neg().add(1);
      const nextValues = later(values, inp.nextValue);
      const delta = inp.rewards.reshape([t, p])
        .add(nextValues.mul(nextNonTerminal).mul(inp.gamma))
        .sub(values);
      const advantages = reverseScan(nextNonTerminal.mul(inp.gamma * inp.lambda), delta);
      return { advantages, returns: advantages.add(values) };
    })
  );
}

/** CleanRL's GAE loop on host arrays ([T * P] row-major, then [P]); the reference for tests. */
export function gaeHost(
  rewards: ArrayLike<number>,
  values: ArrayLike<number>,
  dones: ArrayLike<number>,
  nextValue: ArrayLike<number>,
  nextDone: ArrayLike<number>,
  gamma: number,
  lambda: number,
): { advantages: Float64Array; returns: Float64Array } {
  const p = nextValue.length;
  const t = rewards.length / p;
  const adv = new Float64Array(t * p);
  for (let m = 0; m < p; m++) {
    let last = 0;
    for (let s = t - 1; s >= 0; s--) {
      const nnt = s === t - 1 ? 1 - nextDone[m] : 1 - dones[(s + 1) * p + m];
      const nv = s === t - 1 ? nextValue[m] : values[(s + 1) * p + m];
      const delta = rewards[s * p + m] + gamma * nv * nnt - values[s * p + m];
      last = delta + gamma * lambda * nnt * last;
      adv[s * p + m] = last;
    }
  }
  return { advantages: adv, returns: adv.map((a, i) => a + values[i]) };
}
