/**
 * Ctrl-C / SIGTERM handling: run an async handler (e.g. save a checkpoint) once, then exit 130.
 * @module
 */

/** Options for {@link onInterrupt}; the defaults are for real use, the overrides for tests. */
export interface InterruptOptions {
  /** Called after the handler. Default `Deno.exit`. */
  exit?: (code: number) => void;
}

/**
 * Installs SIGINT and SIGTERM listeners (SIGINT and SIGBREAK on Windows). The first signal calls
 * `handler` and then exits with code 130, even if the handler throws (the error is printed). A
 * second signal while the handler runs exits at once, so a hung save cannot trap the user. The
 * listeners do not keep the process alive. Returns a function that removes them.
 */
export function onInterrupt(
  handler: (signal: Deno.Signal) => void | Promise<void>,
  opts: InterruptOptions = {},
): () => void {
  const exit = opts.exit ?? ((code: number) => Deno.exit(code));
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT", "SIGBREAK"]
    : ["SIGINT", "SIGTERM"];
  let fired = false;
  const installed = signals.map((signal) => {
    const listener = async () => {
      if (fired) {
        console.error(`\n${signal} again: exiting without waiting`);
        return exit(130);
      }
      fired = true;
      try {
        await handler(signal);
      } catch (err) {
        console.error(`error while handling ${signal}:`, err);
      }
      exit(130);
    };
    Deno.addSignalListener(signal, listener);
    return [signal, listener] as const;
  });
  return () => {
    for (const [signal, listener] of installed.splice(0)) {
      Deno.removeSignalListener(signal, listener);
    }
  };
}

/**
 * The one Ctrl-C policy of the training commands: the first SIGINT/SIGTERM sets
 * {@link GracefulStop.requested} and says so; the loop finishes its current unit (step, segment,
 * round), saves its checkpoint and calls {@link GracefulStop.done}, and the process then exits
 * with 130. A second signal exits at once ({@link onInterrupt}).
 */
export class GracefulStop {
  /** Whether a stop was asked for (poll it after each unit). */
  requested = false;
  #release: () => void = () => {};
  readonly #remove: () => void;

  /** Installs the listeners; `unit` names what is finished first ("segment", "round"). */
  constructor(unit: string, opts: InterruptOptions = {}) {
    const finished = new Promise<void>((resolve) => (this.#release = resolve));
    this.#remove = onInterrupt(async () => {
      this.requested = true;
      console.error(`\ninterrupt: stopping after the current ${unit} (Ctrl-C again to quit now)`);
      await finished;
    }, opts);
  }

  /** The run saved what it needs (or ended): removes the listeners; a pending stop exits now. */
  done(): void {
    this.#remove();
    this.#release();
  }
}
