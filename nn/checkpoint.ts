/**
 * Checkpoints in the safetensors layout: an 8-byte little-endian header length N, N bytes of JSON
 * header `{ "__metadata__": { string: string }, "<name>": { "dtype": "F32" | "I32", "shape": [...],
 * "data_offsets": [begin, end] } }` (padded with spaces to a multiple of 8 bytes), then the raw
 * little-endian data, offsets relative to the start of the data.
 *
 * Writing reads every GPU tensor back in one round trip and replaces the file atomically.
 * Reading treats the file as untrusted: the header is validated in full (sizes, UTF-8, JSON,
 * dtypes, shapes, offsets in range and non-overlapping, sizes matching shapes) before the data is
 * read or anything is allocated for it. `loadInto` then checks names and shapes against a model
 * and reports every difference at once.
 * @module
 */

import { atomicWrite } from "../util/atomic.ts";
import { backend } from "../gpu/backend.ts";
import { readMany, Tensor } from "../tensor/tensor.ts";
import { tensor } from "../tensor/functional.ts";
import { type FlatParams, Module } from "./module.ts";
import type { Optimizer } from "./optim.ts";

/** Element types a checkpoint may hold (4 bytes each). */
export type CheckpointDType = "F32" | "I32";

/** One tensor read from a checkpoint: host data, shape and dtype. */
export interface CheckpointTensor {
  /** Element type. */
  dtype: CheckpointDType;
  /** Dimensions. */
  shape: number[];
  /** The values. */
  data: Float32Array | Int32Array;
}

/** A parsed checkpoint: string metadata and the tensors by name (in file order). */
export interface Checkpoint {
  /** The `__metadata__` object. */
  metadata: Record<string, string>;
  /** The tensors. */
  tensors: Map<string, CheckpointTensor>;
}

/** Largest header accepted (bytes). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const METADATA_KEY = "__metadata__";
const DTYPES: Record<CheckpointDType, "f32" | "i32"> = { F32: "f32", I32: "i32" };

function requireLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error("checkpoints are little-endian; this platform is big-endian");
  }
}

/** A module's parameters and buffers by dotted name (what {@link loadInto} restores). */
export function stateDict(module: Module, prefix = ""): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [n, t] of [...module.namedParameters(prefix), ...module.namedBuffers(prefix)]) {
    out[n] = t;
  }
  return out;
}

/**
 * Writes `tensors` and `metadata` to `path` as a safetensors file, atomically (temp file, fsync,
 * rename). GPU tensors are read back in one round trip. f32 and i32 tensors are supported.
 */
export async function saveCheckpoint(
  path: string,
  tensors: Record<string, Tensor | Float32Array | Int32Array>,
  metadata: Record<string, string> = {},
): Promise<void> {
  requireLittleEndian();
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new Error(`saveCheckpoint: metadata '${k}' must be a string`);
  }
  const names = Object.keys(tensors);
  for (const n of names) {
    if (n === "" || n === METADATA_KEY) {
      throw new Error(`saveCheckpoint: invalid tensor name '${n}'`);
    }
    const t = tensors[n];
    if (t instanceof Tensor && t.dtype === "u32") {
      throw new Error(`saveCheckpoint: '${n}' is ${t.describe()}; only f32 and i32 are supported`);
    }
  }
  const gpu = names.filter((n) => tensors[n] instanceof Tensor);
  const read = await readMany(gpu.map((n) => tensors[n] as Tensor));
  const host = new Map<string, { dtype: CheckpointDType; shape: number[]; bytes: Uint8Array }>();
  gpu.forEach((n, i) => {
    const t = tensors[n] as Tensor;
    const a = read[i];
    host.set(n, {
      dtype: t.dtype === "i32" ? "I32" : "F32",
      shape: [...t.shape],
      bytes: new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
    });
  });
  const header: Record<string, unknown> = { [METADATA_KEY]: metadata };
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const n of names) {
    const t = tensors[n];
    const entry = t instanceof Tensor ? host.get(n)! : {
      dtype: (t instanceof Int32Array ? "I32" : "F32") as CheckpointDType,
      shape: [t.length],
      bytes: new Uint8Array(t.buffer, t.byteOffset, t.byteLength),
    };
    header[n] = {
      dtype: entry.dtype,
      shape: entry.shape,
      data_offsets: [at, at + entry.bytes.length],
    };
    parts.push(entry.bytes);
    at += entry.bytes.length;
  }
  let json = JSON.stringify(header);
  const encoder = new TextEncoder();
  let headerBytes = encoder.encode(json);
  json += " ".repeat((8 - (headerBytes.length % 8)) % 8);
  headerBytes = encoder.encode(json);
  const out = new Uint8Array(8 + headerBytes.length + at);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let off = 8 + headerBytes.length;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  await atomicWrite(path, out);
}

/** Reads exactly `n` bytes at `position` of an open file. */
async function readExact(file: Deno.FsFile, position: number, n: number): Promise<Uint8Array> {
  await file.seek(position, Deno.SeekMode.Start);
  const buf = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const r = await file.read(buf.subarray(got));
    if (r === null) throw new Error(`unexpected end of file after ${position + got} bytes`);
    got += r;
  }
  return buf;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const isCount = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/** One validated header entry. */
interface HeaderEntry {
  name: string;
  dtype: CheckpointDType;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Validates a parsed header against a data region of `dataBytes` bytes. Throws naming the first
 * problem (with the tensor name).
 */
function validateHeader(
  header: unknown,
  dataBytes: number,
): { metadata: Record<string, string>; entries: HeaderEntry[] } {
  if (!isPlainObject(header)) throw new Error("header is not a JSON object");
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(value)) throw new Error(`'${METADATA_KEY}' is not an object`);
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== "string") throw new Error(`metadata '${k}' is not a string`);
        Object.defineProperty(metadata, k, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      continue;
    }
    const where = `tensor '${name}'`;
    if (!isPlainObject(value)) throw new Error(`${where}: entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = value;
    if (typeof dtype !== "string" || !Object.hasOwn(DTYPES, dtype)) {
      throw new Error(`${where}: unknown dtype ${JSON.stringify(dtype)} (supported: F32, I32)`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new Error(
        `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`,
      );
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new Error(`${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
    }
    const [begin, end] = offsets as number[];
    if (begin > end || end > dataBytes) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] are out of range (the data region holds ${dataBytes} bytes)`,
      );
    }
    let elems = 1;
    for (const d of shape as number[]) {
      elems *= d;
      if (!Number.isSafeInteger(elems * 4)) {
        throw new Error(`${where}: shape ${JSON.stringify(shape)} is too large`);
      }
    }
    if (end - begin !== elems * 4) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape ` +
          `[${shape}] of ${dtype} needs ${elems * 4}`,
      );
    }
    entries.push({ name, dtype: dtype as CheckpointDType, shape: shape as number[], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new Error(
        `tensors '${sorted[i - 1].name}' [${sorted[i - 1].begin}, ${sorted[i - 1].end}] and ` +
          `'${sorted[i].name}' [${sorted[i].begin}, ${sorted[i].end}] overlap`,
      );
    }
  }
  return { metadata, entries };
}

/**
 * Reads and validates a checkpoint written by {@link saveCheckpoint} (or any safetensors file of
 * F32/I32 tensors). The file is untrusted: every check runs before the data is read, and errors
 * name the file and the problem.
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  requireLittleEndian();
  const file = await Deno.open(path, { read: true });
  try {
    const fail = (msg: string): never => {
      throw new Error(`loadCheckpoint(${path}): ${msg}`);
    };
    const size = (await file.stat()).size;
    if (size < 8) fail(`file is ${size} bytes; a checkpoint starts with an 8-byte header length`);
    const lenBytes = await readExact(file, 0, 8);
    const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (n > BigInt(MAX_HEADER_BYTES)) {
      fail(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    }
    if (n > BigInt(size - 8)) {
      fail(
        `header length ${n} exceeds the ${size - 8} bytes after the length field (truncated file?)`,
      );
    }
    const headerLen = Number(n);
    const headerBytes = await readExact(file, 8, headerLen);
    let text = "";
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
    } catch {
      fail("header is not valid UTF-8");
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      fail(`header is not valid JSON (${(e as Error).message})`);
    }
    const dataStart = 8 + headerLen;
    let checked: ReturnType<typeof validateHeader> | undefined;
    try {
      checked = validateHeader(parsed, size - dataStart);
    } catch (e) {
      fail((e as Error).message);
    }
    const { metadata, entries } = checked!;
    const end = entries.reduce((m, e) => Math.max(m, e.end), 0);
    const data = end > 0 ? await readExact(file, dataStart, end) : new Uint8Array(0);
    const tensors = new Map<string, CheckpointTensor>();
    for (const e of entries) {
      // Copy into a fresh, 4-byte-aligned buffer (offsets in the file need not be aligned).
      const bytes = data.slice(e.begin, e.end);
      const values = e.dtype === "F32"
        ? new Float32Array(bytes.buffer)
        : new Int32Array(bytes.buffer);
      tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: values });
    }
    return { metadata, tensors };
  } finally {
    file.close();
  }
}

/**
 * One part of a checkpoint (a task, an optimizer, a controller): tensors and string metadata, the
 * names already carrying the part's prefix. Parts are merged with {@link mergeParts} and written
 * with {@link saveCheckpoint}; each part's owner reads its own entries back.
 */
export interface CheckpointPart {
  /** Tensors by full name (views are fine: they are read when saved). */
  tensors: Record<string, Tensor>;
  /** String metadata by full key. */
  metadata: Record<string, string>;
}

/**
 * A learner's checkpoint part: every parameter of `flat` (`${prefix}<name>`), `more` named tensors
 * (`${prefix}<name>`, e.g. a frozen copy of the policy), the optimizer's state
 * (`${prefix}optim.`) and `counters` as JSON metadata (`${prefix}<key>`). Restored by
 * {@link loadLearnerPart}.
 */
export function learnerPart(
  flat: FlatParams,
  optimizer: Optimizer,
  prefix: string,
  counters: Record<string, unknown>,
  more: [string, Tensor][] = [],
): CheckpointPart {
  const tensors: Record<string, Tensor> = {};
  flat.names.forEach((n, i) => (tensors[prefix + n] = flat.params[i]));
  for (const [n, t] of more) tensors[prefix + n] = t;
  const opt = optimizer.state(`${prefix}optim.`);
  Object.assign(tensors, opt.tensors);
  const metadata = { ...opt.metadata };
  for (const [k, v] of Object.entries(counters)) metadata[prefix + k] = JSON.stringify(v);
  return { tensors, metadata };
}

/**
 * Restores a {@link learnerPart} into `flat`, `more` and `optimizer` (every name and size is
 * checked before anything is written) and returns the counters named `keys` (JSON-parsed; a
 * missing one is an error). `metadata` overrides entries of the checkpoint's (an older layout
 * that kept them elsewhere).
 */
export function loadLearnerPart(
  ckpt: Checkpoint,
  flat: FlatParams,
  optimizer: Optimizer,
  prefix: string,
  keys: readonly string[],
  { more = [], metadata = {} }: { more?: [string, Tensor][]; metadata?: Record<string, string> } =
    {},
): Record<string, unknown> {
  const meta = { ...ckpt.metadata, ...metadata };
  const counters: Record<string, unknown> = {};
  for (const k of keys) {
    const text = meta[prefix + k];
    if (text === undefined) throw new Error(`checkpoint has no '${prefix}${k}' entry`);
    counters[k] = JSON.parse(text);
  }
  const named: [string, Tensor][] = [...flat.names.map((n, i) => [n, flat.params[i]]), ...more] as [
    string,
    Tensor,
  ][];
  const missing = named.filter(([n]) => !ckpt.tensors.has(prefix + n)).map(([n]) => prefix + n);
  if (missing.length) throw new Error(`checkpoint lacks ${missing.join(", ")}`);
  optimizer.loadState({ tensors: ckpt.tensors, metadata: meta }, `${prefix}optim.`);
  loadInto(named, ckpt, { prefix, strict: false });
  return counters;
}

/** Merges checkpoint parts; a name in two parts is an error. */
export function mergeParts(...parts: CheckpointPart[]): CheckpointPart {
  const out: CheckpointPart = { tensors: {}, metadata: {} };
  for (const p of parts) {
    for (const [bag, src] of [[out.tensors, p.tensors], [out.metadata, p.metadata]] as const) {
      for (const [k, v] of Object.entries(src)) {
        if (k in bag) throw new Error(`mergeParts: '${k}' is in two checkpoint parts`);
        (bag as Record<string, unknown>)[k] = v;
      }
    }
  }
  return out;
}

/** Metadata entry `key` of a checkpoint parsed as JSON (an error naming the key when absent). */
export function checkpointJson<T>(ckpt: Checkpoint, key: string): T {
  const text = ckpt.metadata[key];
  if (text === undefined) {
    throw new Error(`checkpoint has no '${key}' entry: it was not written by this command`);
  }
  return JSON.parse(text) as T;
}

/**
 * Checkpoint tensor `name` uploaded as a new GPU tensor, with `shape` when given (the entry must
 * hold as many values; an error naming the entry otherwise).
 */
export function checkpointTensor(ckpt: Checkpoint, name: string, shape?: number[]): Tensor {
  const t = ckpt.tensors.get(name);
  if (!t) throw new Error(`checkpoint lacks '${name}'`);
  if (!shape) return toTensor(t);
  const size = shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== size) {
    throw new Error(`checkpoint entry '${name}' has ${t.data.length} values, expected ${size}`);
  }
  return tensor(t.data, shape, DTYPES[t.dtype]);
}

/** A checkpoint tensor uploaded as a new GPU tensor. */
export function toTensor(t: CheckpointTensor): Tensor {
  return tensor(t.data, t.shape, DTYPES[t.dtype]);
}

/** What {@link loadInto} restored and what it skipped (non-strict mode). */
export interface LoadReport {
  /** Names written. */
  loaded: string[];
  /** Model names absent from the checkpoint. */
  missing: string[];
  /** Checkpoint names (under the prefix) absent from the model. */
  unexpected: string[];
}

/**
 * Copies checkpoint values into a module's parameters and buffers (or into named tensors).
 * Only checkpoint entries under `prefix` are considered (the prefix is stripped). Every name,
 * shape and dtype is checked before anything is written; a mismatch throws one error listing
 * the missing names, the unexpected names and every shape/dtype difference. With
 * `strict: false`, missing and unexpected names are allowed (and reported), not shape mismatches.
 */
export function loadInto(
  target: Module | Record<string, Tensor> | [string, Tensor][],
  checkpoint: Checkpoint,
  { prefix = "", strict = true }: { prefix?: string; strict?: boolean } = {},
): LoadReport {
  const named: [string, Tensor][] = target instanceof Module
    ? Object.entries(stateDict(target))
    : Array.isArray(target)
    ? target
    : Object.entries(target);
  const entries = new Map<string, CheckpointTensor>();
  for (const [n, t] of checkpoint.tensors) {
    if (n.startsWith(prefix)) entries.set(n.slice(prefix.length), t);
  }
  const names = new Set(named.map(([n]) => n));
  const missing = named.map(([n]) => n).filter((n) => !entries.has(n));
  const unexpected = [...entries.keys()].filter((n) => !names.has(n));
  const mismatched: string[] = [];
  for (const [n, t] of named) {
    const e = entries.get(n);
    if (!e) continue;
    const dtype = DTYPES[e.dtype];
    const sameShape = e.shape.length === t.shape.length &&
      e.shape.every((d, i) => d === t.shape[i]);
    if (!sameShape || dtype !== t.dtype) {
      mismatched.push(
        `${prefix}${n}: model [${t.shape}] ${t.dtype} vs checkpoint [${e.shape}] ${dtype}`,
      );
    }
  }
  const list = (names: string[]) => names.map((n) => prefix + n).join(", ");
  const problems: string[] = [];
  if (strict && missing.length) {
    problems.push(`missing (in the model, not in the checkpoint): ${list(missing)}`);
  }
  if (strict && unexpected.length) {
    problems.push(`unexpected (in the checkpoint, not in the model): ${list(unexpected)}`);
  }
  if (mismatched.length) problems.push(`shape/dtype mismatch:\n    ${mismatched.join("\n    ")}`);
  if (problems.length) {
    throw new Error(`loadInto: the checkpoint does not match:\n  ${problems.join("\n  ")}`);
  }
  const be = backend();
  const loaded: string[] = [];
  for (const [n, t] of named) {
    const e = entries.get(n);
    if (!e) continue;
    if (t.size > 0) be.write(t.storageFor("loadInto"), e.data, t.offset);
    loaded.push(n);
  }
  return { loaded, missing, unexpected };
}
