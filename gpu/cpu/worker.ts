/**
 * A CPU backend worker thread (see gpu/cpu/pool.ts): instantiates the backend's WebAssembly
 * kernels over the shared memory, then runs the jobs the main thread posts in its slot of the
 * control block, until it has been idle for a while; then it closes itself (so a finished program
 * can exit) and the pool starts a new one when work comes.
 * @module
 */

/** What the pool sends at start. */
interface Init {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  names: string[];
  /** Int32 index of this worker's slot in the control block. */
  slot: number;
  /** Spins on the slot before sleeping. */
  spins: number;
  /** Milliseconds idle before closing. */
  idleMs: number;
}

/** Slot layout (Int32 indices from the slot start); shared with pool.ts. */
const SEQ = 0, DONE = 1, STATE = 2, FN = 3, ERR = 4, ARGS = 8;
const IDLE = 1, CLOSED = 3, STARTING = 4;

const scope = self as unknown as {
  onmessage: ((e: MessageEvent<Init>) => void) | null;
  close(): void;
};

scope.onmessage = async (e: MessageEvent<Init>) => {
  const { memory, module, names, slot, spins, idleMs } = e.data;
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const fns = names.map((n) => instance.exports[n] as (...args: number[]) => void);
  const I = new Int32Array(memory.buffer, 0, (slot + ARGS + 16) + 1);
  const at = (k: number) => slot + k;
  // Ready: from now on the pool posts this worker's shares here (jobs are never queued before).
  Atomics.store(I, at(DONE), Atomics.load(I, at(SEQ)));
  if (Atomics.compareExchange(I, at(STATE), STARTING, IDLE) !== STARTING) return;
  for (;;) {
    let seq = Atomics.load(I, at(SEQ));
    if (seq === Atomics.load(I, at(DONE))) {
      for (let i = 0; i < spins && seq === Atomics.load(I, at(DONE)); i++) {
        seq = Atomics.load(I, at(SEQ));
      }
      if (seq === Atomics.load(I, at(DONE))) {
        const r = Atomics.wait(I, at(SEQ), seq, idleMs);
        if (r === "timed-out" && Atomics.compareExchange(I, at(STATE), IDLE, CLOSED) === IDLE) {
          scope.close();
          return;
        }
        continue;
      }
    }
    try {
      const args: number[] = [];
      const n = I[at(ARGS)];
      for (let k = 0; k < n; k++) args.push(I[at(ARGS + 1 + k)]);
      fns[I[at(FN)]](...args);
    } catch {
      Atomics.store(I, at(ERR), 1);
    }
    Atomics.store(I, at(STATE), IDLE);
    Atomics.store(I, at(DONE), seq);
    Atomics.notify(I, at(DONE));
  }
};
