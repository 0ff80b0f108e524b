/**
 * The CPU backend's memory: one shared, growable `WebAssembly.Memory` that the JavaScript
 * kernels, the WebAssembly kernels and the worker threads all address, carved into 256-byte
 * aligned blocks by a size-class allocator (the same classes as the WebGPU buffer pool). Freed
 * blocks are reused at once: CPU kernels finish before `run` returns, so nothing pending can
 * still read a freed block.
 * @module
 */

/** Bytes per WebAssembly page. */
const PAGE = 65536;

/** Alignment of every block (WebGPU's storage offset alignment, and ample for SIMD). */
export const ALIGN = 256;

/** Bytes kept free past the last block (vector reads may run past a buffer's end). */
const GUARD = 64;

/** Most pages the memory may grow to (wasm32: 4 GiB). */
const MAX_PAGES = 65536;

/** Rounds a byte count up to its size class. */
export function sizeClass(bytes: number): number {
  const b = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
  if (b <= 4096) return b;
  // Above 4 KiB: 8 classes per power of two (at most 12.5% waste), kept 256-aligned.
  const p = 2 ** Math.floor(Math.log2(b));
  const step = Math.max(ALIGN, p / 8);
  return Math.ceil(b / step) * step;
}

/** Typed views of the whole memory (renewed when it grows). */
export interface Views {
  /** f32 view. */
  F: Float32Array;
  /** i32 view. */
  I: Int32Array;
  /** u32 view. */
  U: Uint32Array;
  /** Byte view. */
  B: Uint8Array;
}

/** A shared linear memory with a size-class allocator. */
export class SharedMemory {
  /** The memory (shared with the WebAssembly kernels and workers). */
  readonly memory: WebAssembly.Memory;
  #top: number;
  #free = new Map<number, number[]>();
  #views: Views;

  /** Creates the memory with `initialBytes` (rounded up to pages); `reserved` bytes at 0 are kept. */
  constructor(initialBytes = 16 << 20, reserved = ALIGN) {
    this.memory = new WebAssembly.Memory({
      initial: Math.ceil(initialBytes / PAGE),
      maximum: MAX_PAGES,
      shared: true,
    });
    this.#top = Math.ceil(reserved / ALIGN) * ALIGN;
    this.#views = this.#makeViews();
  }

  #makeViews(): Views {
    const buf = this.memory.buffer;
    return {
      F: new Float32Array(buf),
      I: new Int32Array(buf),
      U: new Uint32Array(buf),
      B: new Uint8Array(buf),
    };
  }

  /** Current views (cheap; renewed only after the memory grew). */
  get views(): Views {
    if (this.#views.B.byteLength !== this.memory.buffer.byteLength) this.#views = this.#makeViews();
    return this.#views;
  }

  /** Bytes the allocator has handed out from the top (high-water mark). */
  get used(): number {
    return this.#top;
  }

  /**
   * Allocates a block of at least `bytes` (its size class) and returns its byte address.
   * @throws RangeError when the memory cannot grow that far.
   */
  alloc(bytes: number): { ptr: number; size: number } {
    const size = sizeClass(bytes);
    const list = this.#free.get(size);
    const reused = list?.pop();
    if (reused !== undefined) return { ptr: reused, size };
    const ptr = this.#top;
    const end = ptr + size;
    const have = this.memory.buffer.byteLength;
    // A guard past the last block: vector kernels may read up to 16 bytes beyond a run.
    if (end + GUARD > have) {
      const pages = Math.ceil((end + GUARD - have) / PAGE);
      const current = have / PAGE;
      // Grow by at least a quarter of the current size, so a run of allocations grows rarely.
      const want = Math.min(MAX_PAGES, Math.max(current + pages, Math.ceil(current * 1.25)));
      if (current + pages > MAX_PAGES) {
        throw new RangeError(
          `CPU backend: out of memory (${Math.round(end / 2 ** 20)} MiB needed, the WebAssembly ` +
            "memory holds at most 4096 MiB); use smaller batches or models",
        );
      }
      this.memory.grow(want - current);
    }
    this.#top = end;
    return { ptr, size };
  }

  /** Returns a block from {@link alloc} to its size class's free list. */
  free(ptr: number, size: number): void {
    const list = this.#free.get(size);
    if (list) list.push(ptr);
    else this.#free.set(size, [ptr]);
  }
}
