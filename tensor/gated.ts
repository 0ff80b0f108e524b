/**
 * Gated regions at the tensor level: `whenGpu(flag, fn)` records `fn`'s work so that it takes
 * effect only where the GPU value `flag` is non-zero, with no host sync (see
 * `Backend.beginGated`). The branch not taken costs no compute: on WebGPU its dispatches get zero
 * workgroups, on the CPU backend they are skipped.
 *
 * `fn` runs in its own `tidy` scope: the tensors it creates and does not return (activations,
 * intermediate gradients) are freed at the region's end, so they need not be computed there.
 * Pending (fused) tensors are computed at both ends of the region: those created before it so
 * that they are not computed under the flag, those created inside (what `fn` returns, and what it
 * kept) so that their work is gated.
 * Tensors created inside hold unspecified values where the flag was 0; combine them with values
 * from outside through `ops.where(flag, inside, outside)`, which selects without arithmetic.
 * @module
 */

import { backend, GatedRegionError } from "../gpu/backend.ts";
import { realizeAllPending, type Tensor, type TensorContainer, tidy } from "./tensor.ts";

/**
 * Runs `fn` inside a gated region on `flag` (one element, any dtype; non-zero = run) and returns
 * its result. `fn` must not read back, copy between storages, or open another region (errors
 * say so); host uploads inside it (constants, random-stream parameters) are allowed into fresh
 * tensors.
 * @throws GatedRegionError when `flag` is not a single element, or on a broken rule inside `fn`.
 */
export function whenGpu<T extends TensorContainer>(flag: Tensor, fn: () => T): T {
  if (flag.size !== 1) {
    throw new GatedRegionError(
      `whenGpu: the flag must be one element, got ${flag.describe()}; reduce or slice it first`,
    );
  }
  realizeAllPending();
  const be = backend();
  be.beginGated(flag.refFor("whenGpu"), flag.dtype);
  try {
    const out = tidy(fn);
    realizeAllPending();
    return out;
  } finally {
    be.endGated();
  }
}
