/**
 * What the NATS benchmarks (bench/dist.ts, bench/dist_gan.ts) share: CLI subprocesses on the CPU
 * backend, a private `nats-server` on a free 127.0.0.1 port, and a pool of workers restarted
 * between measurements.
 * @module
 */

import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Starts `cli.ts ARGS` on the CPU backend with `threads` threads per process. */
export function spawnCli(args: string[], threads: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli.ts", ...args],
    cwd: ROOT,
    env: { AUTOLOSS_BACKEND: "cpu", AUTOLOSS_THREADS: threads, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Waits for `p`; its stdout and stderr, or an error with them when it failed. */
export async function finish(p: Deno.ChildProcess): Promise<string> {
  const out = await p.output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`failed:\n${text}`);
  return text;
}

/** A running `nats-server` with JetStream file storage under a temporary directory. */
export interface BenchServer {
  /** `nats://127.0.0.1:PORT`. */
  url: string;
  /** The temporary directory (removed by `stop`). */
  tmp: string;
  /** Kills `n` workers left from before and starts `n` new ones, then lets them connect. */
  workers(n: number): Promise<void>;
  /** Stops the workers and the server and removes the directory. */
  stop(): Promise<void>;
}

/** Starts a server (waiting until it accepts connections) in a fresh temporary directory. */
export async function startServer(prefix: string, threads: string): Promise<BenchServer> {
  const tmp = await Deno.makeTempDir({ prefix });
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const server = new Deno.Command("nats-server", {
    args: ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", `${tmp}/js`],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const url = `nats://127.0.0.1:${port}`;
  const pool: Deno.ChildProcess[] = [];
  for (let i = 0; i < 100; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    tmp,
    async workers(n) {
      for (const w of pool.splice(0)) {
        w.kill("SIGKILL");
        await w.output();
      }
      for (let i = 0; i < n; i++) {
        pool.push(spawnCli(["worker", "--nats", url, "--insecure", "--backend", "cpu"], threads));
      }
      await new Promise((r) => setTimeout(r, 1500)); // let the workers start
    },
    async stop() {
      for (const w of pool) {
        w.kill("SIGKILL");
        await w.output().catch(() => {});
      }
      server.kill("SIGTERM");
      await server.status;
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    },
  };
}
