/**
 * The NATS side of distributed training: connecting (credentials, TLS, the `--insecure` rule),
 * the JetStream streams and consumer, and the object store of controller files.
 *
 * - `AUTOLOSS_JOBS` (subjects `autoloss.jobs.<run>`): a work-queue stream on file storage; every
 *   worker pulls from the one durable consumer `autoloss-workers` with explicit acks, so each job
 *   goes to one worker at a time and is redelivered when its worker does not ack within the ack
 *   wait (`AUTOLOSS_ACK_WAIT` seconds, default 120): a killed worker's job goes to another one.
 * - `AUTOLOSS_RESULTS` (subjects `autoloss.results.<run>`): a limits stream on file storage (7
 *   days) that the learner reads from its start, so a resumed learner reuses earlier results.
 *   Publishes carry the job id as message id: a duplicate within 2 minutes is dropped by the
 *   server, later ones by the learner.
 * - Object store `autoloss-artifacts`: controller files named by their SHA-256.
 *
 * Only dist/ imports this module, and only cli.ts's `worker` command and `--workers` load dist/,
 * so a plain run never loads the NATS client.
 * @module
 */

import {
  connect,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
} from "npm:@nats-io/transport-node@3.4.0";
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from "npm:@nats-io/jetstream@3.4.0";
import { type ObjectStore, Objm } from "npm:@nats-io/obj@3.4.0";
import { UserError } from "../util/errors.ts";
import { sha256 } from "./job.ts";

/** The jobs stream. */
export const JOBS_STREAM = "AUTOLOSS_JOBS";
/** The results stream. */
export const RESULTS_STREAM = "AUTOLOSS_RESULTS";
/** The workers' shared durable consumer. */
export const WORKERS_CONSUMER = "autoloss-workers";
/** The object store bucket of controller files. */
export const ARTIFACTS_BUCKET = "autoloss-artifacts";

/** Subject of a run's jobs. */
export const jobsSubject = (run: string): string => `autoloss.jobs.${run}`;
/** Subject of a run's results. */
export const resultsSubject = (run: string): string => `autoloss.results.${run}`;

/** How to reach and authenticate to the server (CLI flags). */
export interface NatsOptions {
  /** `nats://[TOKEN@|USER:PASS@]HOST:PORT` or `tls://...` (TLS required). */
  url: string;
  /** A credentials file (JWT and NKey seed, `nsc generate creds`). */
  creds?: string;
  /** A file holding an NKey user seed (`SU...`). */
  nkey?: string;
  /** CA certificate (PEM) to verify the server's TLS certificate with; implies TLS. */
  tlsCa?: string;
  /** Allow a connection without credentials (a local test server). */
  insecure?: boolean;
  /** Connection name shown by the server's monitoring. */
  name?: string;
}

/** The redelivery timeout in seconds (`AUTOLOSS_ACK_WAIT`, default 120). */
export function ackWaitSeconds(): number {
  const v = Deno.env.get("AUTOLOSS_ACK_WAIT");
  const n = v === undefined ? 120 : Number(v);
  if (!(n > 0)) throw new UserError(`AUTOLOSS_ACK_WAIT must be a positive number, got '${v}'`);
  return n;
}

/**
 * Connects as `opts` say. Credentials come from the URL's user part (`TOKEN@` or `USER:PASS@`),
 * `--creds` or `--nkey`; without any the connection is refused unless `insecure` is set.
 */
export async function connectNats(opts: NatsOptions): Promise<NatsConnection> {
  let u: URL;
  try {
    u = new URL(opts.url);
  } catch {
    throw new UserError(`'${opts.url}' is not a server URL (nats://HOST:PORT)`);
  }
  if (!["nats:", "tls:"].includes(u.protocol) || !u.hostname) {
    throw new UserError(`'${opts.url}' is not a NATS URL (nats://HOST:PORT or tls://HOST:PORT)`);
  }
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  const server = `${u.protocol}//${u.hostname}:${u.port || "4222"}`;
  const hasCredentials = !!user || !!opts.creds || !!opts.nkey;
  if (!hasCredentials && !opts.insecure) {
    throw new UserError(
      `refusing to connect to ${server} without credentials: give a token (nats://TOKEN@HOST:PORT)` +
        `, a user (nats://USER:PASS@HOST:PORT), --creds FILE or --nkey FILE, or --insecure for ` +
        `a trusted local server`,
    );
  }
  const read = async (path: string, what: string) => {
    try {
      return await Deno.readFile(path);
    } catch (err) {
      throw new UserError(`cannot read the ${what} ${path}: ${(err as Error).message}`);
    }
  };
  // Reconnect for ever: a server restart (file storage keeps every job) must not end a run.
  const conn: Parameters<typeof connect>[0] = {
    servers: server,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  };
  if (user && pass) Object.assign(conn, { user, pass });
  else if (user) conn.token = user;
  if (opts.creds) conn.authenticator = credsAuthenticator(await read(opts.creds, "credentials"));
  else if (opts.nkey) {
    const seed = new TextDecoder().decode(await read(opts.nkey, "NKey seed")).trim();
    conn.authenticator = nkeyAuthenticator(new TextEncoder().encode(seed));
  }
  if (u.protocol === "tls:" || opts.tlsCa) {
    conn.tls = opts.tlsCa ? { caFile: opts.tlsCa } : {};
  }
  try {
    return await connect(conn);
  } catch (err) {
    throw new UserError(`cannot connect to ${server}: ${(err as Error).message}`);
  }
}

/** Creates (or updates) the streams and the workers' consumer; idempotent. */
export async function ensureStreams(nc: NatsConnection): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  const ensure = async (cfg: Parameters<JetStreamManager["streams"]["add"]>[0]) => {
    try {
      await jsm.streams.info(cfg.name!);
    } catch {
      try {
        await jsm.streams.add(cfg);
      } catch (err) {
        if (!/already in use|exists/i.test((err as Error).message)) throw err;
      }
    }
  };
  const minute = 60e9;
  await ensure({
    name: JOBS_STREAM,
    subjects: ["autoloss.jobs.*"],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    duplicate_window: 2 * minute,
  });
  await ensure({
    name: RESULTS_STREAM,
    subjects: ["autoloss.results.*"],
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    max_age: 7 * 24 * 60 * minute,
    duplicate_window: 2 * minute,
  });
  const ackWait = Math.round(ackWaitSeconds() * 1e9);
  const consumer = {
    durable_name: WORKERS_CONSUMER,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ackWait,
    max_deliver: -1,
    max_ack_pending: 1000,
  };
  try {
    const info = await jsm.consumers.info(JOBS_STREAM, WORKERS_CONSUMER);
    if (info.config.ack_wait !== ackWait) {
      await jsm.consumers.update(JOBS_STREAM, WORKERS_CONSUMER, { ack_wait: ackWait });
    }
  } catch {
    try {
      await jsm.consumers.add(JOBS_STREAM, consumer);
    } catch (err) {
      if (!/already in use|exists/i.test((err as Error).message)) throw err;
    }
  }
  return jsm;
}

/** The object store of controller files. */
export async function artifacts(nc: NatsConnection): Promise<ObjectStore> {
  return await new Objm(nc).create(ARTIFACTS_BUCKET, { storage: StorageType.File });
}

/** Stores `bytes` under their SHA-256 (once) and returns it. */
export async function putArtifact(store: ObjectStore, bytes: Uint8Array): Promise<string> {
  const name = sha256(bytes);
  if (!(await store.info(name))) await store.putBlob({ name }, bytes);
  return name;
}

/** Reads an artifact and checks that its content matches its name. */
export async function getArtifact(store: ObjectStore, name: string): Promise<Uint8Array> {
  const bytes = await store.getBlob(name);
  if (!bytes) throw new Error(`artifact ${name} is not in the object store`);
  if (sha256(bytes) !== name) throw new Error(`artifact ${name}: content does not match its hash`);
  return bytes;
}

/**
 * Runs `fn` until it succeeds, waiting 1 s between tries, for at most `seconds` (default 120):
 * publishing through a server restart. Rethrows the last error after that.
 */
export async function retrying<T>(
  what: string,
  fn: () => Promise<T>,
  log: (line: string) => void,
  seconds = 120,
): Promise<T> {
  const until = performance.now() + seconds * 1000;
  for (let attempt = 1;; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (performance.now() > until) throw err;
      if (attempt === 1) log(`dist: ${what} failed (${(err as Error).message}); retrying`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
