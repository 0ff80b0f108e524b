/**
 * Atomic file writes: write to a temporary file beside the target, flush it to disk, then rename it
 * over the target. A crash or Ctrl-C mid-write leaves either the old file or the new one, never a
 * torn mix.
 * @module
 */

/**
 * Writes `data` to `path` atomically (temp file + fsync + rename).
 *
 * @param path destination file; its directory must exist.
 * @param data bytes or UTF-8 text.
 */
export async function atomicWrite(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } finally {
    file.close();
  }
  try {
    await Deno.rename(tmp, path);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
}
