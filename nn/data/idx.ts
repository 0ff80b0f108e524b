/**
 * IDX file parser (the format of MNIST and Fashion-MNIST). Files are treated as untrusted input:
 * every header field is checked against the file length, and each failure names the file and the
 * problem. Gzip-compressed files (`.gz`, or any file starting with the gzip magic) are inflated
 * with the built-in `DecompressionStream("gzip")`.
 *
 * Layout: two zero bytes, a type byte (0x08 = unsigned byte; the only type supported here), a
 * dimension count byte, one big-endian u32 per dimension, then the data in row-major order.
 * @module
 */

import { UserError } from "../../util/errors.ts";

/** A parsed IDX array of unsigned bytes. */
export interface IdxArray {
  /** Dimensions from the header (e.g. `[60000, 28, 28]` for MNIST training images). */
  dims: number[];
  /** The values, row-major; `data.length` is the product of `dims`. */
  data: Uint8Array;
}

/** IDX type codes and their names, for error messages. */
const TYPE_NAMES: Record<number, string> = {
  0x08: "unsigned byte",
  0x09: "signed byte",
  0x0b: "short",
  0x0c: "int",
  0x0d: "float",
  0x0e: "double",
};

/** Largest data size accepted (bytes): far above any IDX dataset, far below memory limits. */
const MAX_DATA_BYTES = 2 ** 31;

/** An error about an IDX file: the message starts with the file's name. */
export class IdxFormatError extends UserError {
  /** The file (or label) the bytes came from. */
  readonly source: string;

  /** Creates an error about `source`. */
  constructor(source: string, problem: string) {
    super(`${source}: ${problem}`);
    this.name = "IdxFormatError";
    this.source = source;
  }
}

/**
 * Parses IDX bytes (already decompressed). `source` names the file in error messages.
 * @throws IdxFormatError for a bad magic number, an unsupported type, a truncated header or
 * data, or dims that do not match the number of data bytes.
 */
export function parseIdx(bytes: Uint8Array, source = "<idx bytes>"): IdxArray {
  const fail = (problem: string): never => {
    throw new IdxFormatError(source, problem);
  };
  if (bytes.length < 4) {
    fail(`truncated header: ${bytes.length} bytes, an IDX file starts with a 4-byte magic number`);
  }
  const magicHex = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    fail(`wrong magic number 0x${magicHex}: an IDX file starts with two zero bytes`);
  }
  const type = bytes[2];
  if (type !== 0x08) {
    const name = TYPE_NAMES[type];
    fail(
      name
        ? `unsupported data type 0x${type.toString(16).padStart(2, "0")} (${name}); only 0x08 ` +
          "(unsigned byte) is supported"
        : `wrong magic number 0x${magicHex}: unknown data type byte 0x${
          type.toString(16).padStart(2, "0")
        }`,
    );
  }
  const ndim = bytes[3];
  if (ndim === 0) fail(`wrong magic number 0x${magicHex}: zero dimensions`);
  const headerBytes = 4 + 4 * ndim;
  if (bytes.length < headerBytes) {
    fail(
      `truncated header: ${ndim} dims need ${headerBytes} header bytes, the file has ${bytes.length}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let expected = 1;
  for (let i = 0; i < ndim; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    expected *= d;
  }
  const have = bytes.length - headerBytes;
  const dimText = `[${dims.join(", ")}]`;
  if (expected > MAX_DATA_BYTES) {
    fail(
      `dims ${dimText} declare ${expected} bytes of data, more than the limit of ${MAX_DATA_BYTES}`,
    );
  }
  if (have < expected) {
    fail(
      `truncated data: dims ${dimText} need ${expected} bytes of data, only ${have} follow the ` +
        "header",
    );
  }
  if (have > expected) {
    fail(
      `dims ${dimText} are inconsistent with the file length: they account for ${expected} bytes ` +
        `of data but ${have} follow the header (${have - expected} extra)`,
    );
  }
  return { dims, data: bytes.subarray(headerBytes) };
}

/** True when `bytes` start with the gzip magic number (1f 8b). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Inflates gzip bytes with `DecompressionStream`; errors name `source`. */
export async function gunzip(bytes: Uint8Array, source = "<gzip bytes>"): Promise<Uint8Array> {
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
      new DecompressionStream("gzip"),
    );
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new IdxFormatError(
      source,
      `gzip decompression failed (corrupt or truncated .gz file): ${(e as Error).message}`,
    );
  }
}

/**
 * Reads and parses an IDX file, inflating it first when it is gzip-compressed (a `.gz` name or
 * the gzip magic). Needs `--allow-read`.
 * @throws IdxFormatError for malformed content; the file system's error (with the path) when
 * the file cannot be read.
 */
export async function readIdx(path: string | URL): Promise<IdxArray> {
  const source = path instanceof URL
    ? (path.protocol === "file:" ? path.pathname : path.href)
    : path;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Deno.errors.NotFound(`${source}: IDX file not found`);
    }
    throw e;
  }
  if (source.endsWith(".gz") || isGzip(bytes)) {
    if (!isGzip(bytes)) {
      throw new IdxFormatError(source, "named .gz but does not start with the gzip magic (1f 8b)");
    }
    bytes = await gunzip(bytes, source);
  }
  return parseIdx(bytes, source);
}

/**
 * Checks that `idx` has `ndim` dims (and, where given, the expected sizes; `-1` = any).
 * @throws IdxFormatError naming `source` and the shapes.
 */
export function expectDims(idx: IdxArray, expected: readonly number[], source: string): void {
  const ok = idx.dims.length === expected.length &&
    expected.every((d, i) => d < 0 || d === idx.dims[i]);
  if (!ok) {
    const want = expected.map((d) => (d < 0 ? "*" : String(d))).join(", ");
    throw new IdxFormatError(source, `dims [${idx.dims.join(", ")}] where [${want}] was expected`);
  }
}
