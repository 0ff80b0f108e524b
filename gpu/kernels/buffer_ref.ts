/**
 * The handle kernels take: a storage, a 256-aligned byte offset into it, and an element count.
 * Tensors are contiguous, so this is all a kernel needs besides shapes.
 * @module
 */

import type { Access, Binding, Storage } from "../backend.ts";

/** A contiguous run of elements inside a storage. */
export interface BufferRef {
  /** The storage holding the elements. */
  storage: Storage;
  /** Byte offset of the first element (a multiple of 256 when non-zero). */
  offset: number;
  /** Number of 4-byte elements. */
  numel: number;
}

/** A binding for a buffer ref. */
export function bind(ref: BufferRef, access: Access): Binding {
  return { storage: ref.storage, offset: ref.offset, size: Math.max(4, ref.numel * 4), access };
}
