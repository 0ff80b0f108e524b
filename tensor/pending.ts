/**
 * Bookkeeping of the tensor module (tensor/tensor.ts re-exports its public names): the host
 * array and pending-map types, which pending tensors read which storages (computed before a
 * write there), byte ranges known to hold zeros, and the backend write hook that keeps both.
 * @module
 */

import { backend, type BufferRef, type Storage } from "../gpu/backend.ts";
import type { Expr, MapInput } from "../gpu/kernel.ts";
import type { Tensor } from "./tensor.ts";

/** A typed host array for a dtype. */
export type HostArray = Float32Array | Int32Array | Uint32Array;

/** An input of a pending elementwise expression: a bound region read through strides. */
export interface Leaf extends MapInput {
  /** The region read (its storage is retained while the tensor is pending). */
  ref: BufferRef;
}

/**
 * The value of a pending tensor: an elementwise expression over leaves, not computed yet (see
 * tensor/lazy.ts). Computed on first use of the tensor's memory, by ONE kernel.
 */
export interface PendingMap {
  /** The value of each element. */
  readonly expr: Expr;
  /** The expression's inputs (`E.in(i)` reads leaf i). */
  readonly leaves: readonly Leaf[];
}

/** Pending tensors by the storages their leaves read (what a write to a storage must compute). */
export const readers = new Map<Storage, Set<Tensor>>();

/** Every pending tensor not yet computed or disposed. */
export const livePending = new Set<Tensor>();

/**
 * Computes every pending tensor now. A gated region (tensor/gated.ts) calls it at both ends, so
 * that nothing pending from before is computed under its flag and nothing pending from inside is
 * computed after it.
 */
export function realizeAllPending(): void {
  for (const t of [...livePending]) t.realize();
}

/**
 * Computes every pending tensor that reads bytes `[from, to)` of `storage` (default: any of it),
 * so that a write there cannot change their values. The backend calls this before each write
 * (`Backend.setWriteHook`); readers of other regions of the storage (parameters of another group
 * in one flat buffer) stay pending.
 */
export function realizeReaders(storage: Storage, from = 0, to = Infinity): void {
  const zero = zeroRegions.get(storage);
  if (zero) {
    // What the write does not cover stays known zero.
    const left = zero.flatMap((z) =>
      z.to <= from || z.from >= to ? [z] : [
        ...(z.from < from ? [{ ...z, to: from }] : []),
        ...(to < z.to ? [{ ...z, from: to }] : []),
      ]
    );
    if (left.length) zeroRegions.set(storage, left);
    else zeroRegions.delete(storage);
  }
  const set = readers.get(storage);
  if (!set) return;
  for (const t of [...set]) {
    const p = t.pendingMap;
    const hit = !p ||
      p.leaves.some((l) =>
        l.ref.storage === storage && l.ref.offset < to && l.ref.offset + 4 * l.ref.numel > from
      );
    if (hit) t.realize();
  }
}

/**
 * Byte ranges of storages known to hold zeros (see {@link markZero}), per storage, with the
 * tensor that was marked (its disposal drops the record, so a pooled storage reused by another
 * tensor never inherits it).
 */
const zeroRegions = new Map<Storage, { t: Tensor; from: number; to: number }[]>();

/**
 * Records that `t` (computed) holds zeros now; {@link isKnownZero} says so until anything writes
 * to its memory (the backend's write hook forgets the range) or `t` is disposed. Lets the first
 * gradient of a parameter after `zeroGrad` be written into its gradient buffer instead of added.
 */
export function markZero(t: Tensor): void {
  hookBackend();
  const s = t.storageFor("markZero");
  const list = zeroRegions.get(s) ?? [];
  list.push({ t, from: t.offset, to: t.offset + 4 * t.size });
  zeroRegions.set(s, list);
}

/** Whether all of `t`'s memory is known to hold zeros (see {@link markZero}). */
export function isKnownZero(t: Tensor): boolean {
  if (t.isDisposed || t.pendingMap) return false;
  const list = zeroRegions.get(t.storageFor("isKnownZero"));
  const from = t.offset, to = t.offset + 4 * t.size;
  return !!list?.some((z) => z.from <= from && to <= z.to);
}

/** Drops the zero records made by marking `t` (on its disposal). */
export function forgetZero(t: Tensor, storage: Storage): void {
  const list = zeroRegions.get(storage);
  if (!list) return;
  const left = list.filter((z) => z.t !== t);
  if (left.length) zeroRegions.set(storage, left);
  else zeroRegions.delete(storage);
}

let hooked: unknown = null;

/** Installs {@link realizeReaders} as the running backend's write hook (once per backend). */
export function hookBackend(): void {
  const be = backend();
  if (hooked === be) return;
  be.setWriteHook(realizeReaders);
  hooked = be;
}
