/**
 * Shared by the dist tests (tests/dist.test.ts, tests/dist_gan.test.ts): a child process whose
 * output lines can be awaited, a `nats-server` on a free 127.0.0.1 port with file storage, and
 * workers (`cli.ts worker`) as subprocesses.
 * @module
 */

import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));

/** Whether `nats-server` is installed (the dist tests are skipped without it). */
export const HAVE_SERVER = await new Deno.Command("nats-server", { args: ["--version"] }).output()
  .then((o) => o.success, () => false);

/** The environment of every child: the CPU backend on one thread, a 2 s redelivery. */
export const ENV = {
  AUTOLOSS_BACKEND: "cpu",
  AUTOLOSS_THREADS: "1",
  AUTOLOSS_ACK_WAIT: "2",
  NO_COLOR: "1",
};

/** A child process whose output lines can be awaited. */
export class Proc {
  readonly lines: string[] = [];
  readonly child: Deno.ChildProcess;
  readonly done: Promise<Deno.CommandStatus>;
  #waiters: { re: RegExp; resolve: (l: string) => void }[] = [];

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, ...args],
      cwd: ROOT,
      env: { ...ENV, ...env },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      let rest = "";
      for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const l of parts) this.#line(l);
      }
      if (rest) this.#line(rest);
    };
    const pumps = Promise.all([pump(this.child.stdout), pump(this.child.stderr)]);
    this.done = pumps.then(() => this.child.status);
  }

  #line(l: string) {
    this.lines.push(l);
    this.#waiters = this.#waiters.filter((w) => !(w.re.test(l) && (w.resolve(l), true)));
  }

  /** The first line (past or future) matching `re`; fails after `ms` or when the process ends. */
  waitFor(re: RegExp, ms = 120_000): Promise<string> {
    const seen = this.lines.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      new Promise<string>((resolve) => this.#waiters.push({ re, resolve })),
      new Promise<string>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no line ${re} in:\n${this.text()}`)), ms);
      }),
      this.done.then((s) => {
        const l = this.lines.find((x) => re.test(x));
        if (l) return l;
        throw new Error(`exited (${s.code}) without a line ${re}:\n${this.text()}`);
      }),
    ]).finally(() => clearTimeout(timer));
  }

  kill(signal: Deno.Signal = "SIGKILL") {
    try {
      this.child.kill(signal);
    } catch { /* already gone */ }
  }

  text(): string {
    return this.lines.join("\n");
  }
}

/** A nats-server on a free 127.0.0.1 port with JetStream on file storage. */
export class Server {
  readonly port: number;
  readonly dir: string;
  readonly extra: string[];
  child: Deno.ChildProcess | null = null;

  constructor(dir: string, extra: string[] = []) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.port = (l.addr as Deno.NetAddr).port;
    l.close();
    this.dir = dir;
    this.extra = extra;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.child = new Deno.Command("nats-server", {
      args: ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", this.dir, ...this.extra],
      stdout: "null",
      stderr: "null",
    }).spawn();
    for (let i = 0; i < 200; i++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: this.port })).close();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    throw new Error(`nats-server did not listen on ${this.port}`);
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    try {
      this.child.kill("SIGTERM");
    } catch { /* gone */ }
    await this.child.status;
    this.child = null;
  }
}

/** Runs `fn` with a fresh server and a temporary directory, removed after. */
export async function withServer(
  fn: (s: Server, tmp: string) => Promise<void>,
  extra: string[] = [],
) {
  const tmp = await Deno.makeTempDir({ prefix: "autoloss-dist-" });
  const server = new Server(`${tmp}/js`, extra);
  try {
    await server.start();
    await fn(server, tmp);
  } finally {
    await server.stop();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** A worker subprocess on `url` (no credentials, CPU backend). */
export function worker(url: string, env: Record<string, string> = {}, extra: string[] = []): Proc {
  return new Proc(["worker", "--nats", url, "--insecure", "--backend", "cpu", ...extra], env);
}

/** SIGKILLs the processes and waits for them. */
export async function stopAll(procs: Proc[]) {
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.done.catch(() => {})));
}
