/**
 * Worker threads for the CPU backend's WebAssembly kernels. Every worker instantiates the same
 * module over the one shared `WebAssembly.Memory`; a parallel kernel is one call of an exported
 * function per thread, each on its own share (rows or columns of a product): the main thread runs
 * share 0, the workers the others, and `run` returns when all are done. Nothing is awaited:
 * threads meet through `Atomics` on a small control block in the shared memory.
 *
 * Measured on Deno 2.9.6 (2-core KVM guest): a spinning worker answers in ~12 us, a sleeping one
 * (futex) in ~360 us, so workers spin briefly after each job before sleeping. A worker idle for
 * {@link IDLE_MS} closes itself, so a program whose work is done can exit (a live worker keeps
 * Deno running). A worker gets work only once it has said it is ready: until then (starting,
 * closed, or unable to start, e.g. without permission to load its module) the main thread runs
 * that worker's share itself, so nothing ever waits on a worker that is not there.
 * @module
 */

/** Int32 slots per worker in the control block. */
const SLOT = 32;
/** Slot layout (Int32 offsets); shared with worker.ts. */
const SEQ = 0, DONE = 1, STATE = 2, FN = 3, ERR = 4, ARGS = 8;
/** Worker states (STARTING and FAILED are the pool's; IDLE, BUSY, CLOSED shared with worker.ts). */
const NONE = 0, IDLE = 1, BUSY = 2, CLOSED = 3, STARTING = 4, FAILED = 5;
/** Most i32 arguments of a job. */
const MAX_ARGS = 16;
/** Milliseconds a worker waits idle before closing itself. */
export const IDLE_MS = 1500;
/** Spins (Atomics.load polls) a worker makes after a job before it sleeps. */
const WORKER_SPINS = 200_000;
/** Spins the main thread makes before it sleeps waiting for workers. */
const MAIN_SPINS = 2_000_000;

/** A pool of worker threads sharing one memory and one WebAssembly module. */
export class WorkerPool {
  /** Threads a job is split over, the main thread included. */
  readonly threads: number;
  readonly #memory: WebAssembly.Memory;
  readonly #module: WebAssembly.Module;
  readonly #names: string[];
  readonly #control: number;
  readonly #workers: (Worker | null)[];
  #I: Int32Array;

  /**
   * A pool of `threads - 1` workers (started on first use) over `memory`; `control` is the byte
   * address of a zeroed block of {@link WorkerPool.controlBytes} bytes; `names` are the exports a
   * job may call.
   */
  constructor(
    memory: WebAssembly.Memory,
    module: WebAssembly.Module,
    names: string[],
    threads: number,
    control: number,
  ) {
    this.threads = Math.max(1, threads);
    this.#memory = memory;
    this.#module = module;
    this.#names = names;
    this.#control = control >> 2;
    this.#workers = new Array(this.threads - 1).fill(null);
    this.#I = new Int32Array(memory.buffer);
  }

  /** Bytes of control block a pool of `threads` needs. */
  static controlBytes(threads: number): number {
    return Math.max(1, threads - 1) * SLOT * 4;
  }

  #slot(w: number): number {
    return this.#control + w * SLOT;
  }

  #spawn(w: number): void {
    Atomics.store(this.#I, this.#slot(w) + STATE, STARTING);
    let worker: Worker;
    try {
      worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
    } catch {
      Atomics.store(this.#I, this.#slot(w) + STATE, FAILED);
      return;
    }
    // A worker that cannot load or instantiate never becomes ready; mark it failed for good.
    worker.onerror = (e) => {
      e.preventDefault();
      Atomics.store(this.#I, this.#slot(w) + STATE, FAILED);
    };
    worker.postMessage({
      memory: this.#memory,
      module: this.#module,
      names: this.#names,
      slot: this.#slot(w),
      spins: WORKER_SPINS,
      idleMs: IDLE_MS,
    });
    this.#workers[w] = worker;
  }

  /**
   * Calls export `fn` once per entry of `shares` (i32 arguments each), in parallel: share 0 on
   * the calling thread, the others on workers (at most `threads - 1`). Returns when all are done.
   * @throws Error when a worker's call failed.
   */
  run(main: (...args: number[]) => void, fn: string, shares: readonly (readonly number[])[]): void {
    const f = this.#names.indexOf(fn);
    if (f < 0) throw new Error(`WorkerPool: no export '${fn}'`);
    if (shares.length > this.threads) {
      throw new Error(`WorkerPool: ${shares.length} shares for ${this.threads} threads`);
    }
    if (this.#I.buffer !== this.#memory.buffer) this.#I = new Int32Array(this.#memory.buffer);
    const I = this.#I;
    const posted: { w: number; seq: number }[] = [];
    const mine: (readonly number[])[] = [shares[0]];
    for (let w = 0; w < shares.length - 1; w++) {
      const args = shares[w + 1];
      if (args.length > MAX_ARGS) throw new Error(`WorkerPool: more than ${MAX_ARGS} arguments`);
      const s = this.#slot(w);
      if (Atomics.compareExchange(I, s + STATE, IDLE, BUSY) !== IDLE) {
        // Not ready (never started, starting, closed itself, or failed): this thread does it.
        const state = Atomics.load(I, s + STATE);
        if (state === NONE || state === CLOSED) this.#spawn(w);
        mine.push(args);
        continue;
      }
      I[s + FN] = f;
      I[s + ARGS] = args.length;
      for (let k = 0; k < args.length; k++) I[s + ARGS + 1 + k] = args[k];
      const seq = I[s + SEQ] + 1;
      Atomics.store(I, s + SEQ, seq);
      Atomics.notify(I, s + SEQ);
      posted.push({ w, seq });
    }
    let error: unknown = null;
    try {
      for (const args of mine) main(...args);
    } catch (err) {
      error = err;
    }
    for (const { w, seq } of posted) {
      const s = this.#slot(w);
      let spins = 0;
      while (Atomics.load(I, s + DONE) !== seq) {
        if (++spins > MAIN_SPINS) Atomics.wait(I, s + DONE, Atomics.load(I, s + DONE), 1);
      }
      if (I[s + ERR]) {
        I[s + ERR] = 0;
        error ??= new Error(`CPU worker ${w + 1}: '${fn}' failed`);
      }
    }
    if (error) throw error;
  }

  /** Stops every worker now (the pool starts new ones if used again). */
  close(): void {
    for (let w = 0; w < this.#workers.length; w++) {
      this.#workers[w]?.terminate();
      this.#workers[w] = null;
      const s = this.#slot(w);
      Atomics.store(this.#I, s + STATE, NONE);
      // Nothing is in flight (run waits for every share), so the counters agree.
      Atomics.store(this.#I, s + DONE, Atomics.load(this.#I, s + SEQ));
    }
  }
}
