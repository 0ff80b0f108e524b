/**
 * A dependency-free PNG encoder (8-bit grayscale or RGB; zlib by `CompressionStream("deflate")`,
 * CRC-32 computed here) and {@link imageGrid} for sample sheets.
 * @module
 */

const CRC_TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});

/** CRC-32 (ISO 3309, as used by PNG and zlib) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Compresses `data` to the zlib format (RFC 1950). */
async function zlib(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const stream = new Blob([data]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** The 8-byte PNG signature. */
export const PNG_SIGNATURE: Uint8Array = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);

/**
 * Encodes 8-bit pixels (row-major, channels interleaved) as a PNG. Every row uses the Sub filter.
 * @param channels 1 for grayscale, 3 for RGB.
 */
export async function encodePng(
  pixels: Uint8Array,
  width: number,
  height: number,
  channels: 1 | 3,
): Promise<Uint8Array> {
  const stride = width * channels;
  if (pixels.length !== stride * height) {
    throw new Error(`encodePng: ${pixels.length} bytes for ${width}x${height}x${channels}`);
  }
  const raw = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const [o, p] = [y * (stride + 1), y * stride];
    raw[o] = 1; // filter type Sub: each byte minus the byte one pixel to its left
    for (let i = 0; i < stride; i++) {
      raw[o + 1 + i] = pixels[p + i] - (i >= channels ? pixels[p + i - channels] : 0);
    }
  }
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([8, channels === 1 ? 0 : 2, 0, 0, 0], 8); // depth, color type, compression, filter, interlace
  const parts = [PNG_SIGNATURE, chunk("IHDR", ihdr), chunk("IDAT", await zlib(raw))];
  parts.push(chunk("IEND", new Uint8Array(0)));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

/**
 * Tiles `n` images (NCHW floats, `channels` 1 or 3) into a `rows` x `cols` grid with a 2-pixel
 * mid-gray border, mapping `range[0]..range[1]` to 0..255 (clamped; NaN becomes 0), as PNG bytes.
 */
export function imageGrid(
  images: Float32Array,
  n: number,
  h: number,
  w: number,
  rows: number,
  cols: number,
  range: [number, number],
  channels: 1 | 3 = 1,
): Promise<Uint8Array> {
  if (images.length !== n * channels * h * w) {
    throw new Error(`imageGrid: ${images.length} values for ${n}x${channels}x${h}x${w}`);
  }
  if (n > rows * cols) throw new Error(`imageGrid: ${n} images do not fit ${rows}x${cols}`);
  const B = 2; // border width
  const [W, H] = [cols * (w + B) + B, rows * (h + B) + B];
  const [lo, hi] = range;
  const out = new Uint8Array(W * H * channels).fill(128);
  for (let k = 0; k < n; k++) {
    const [top, left] = [B + Math.floor(k / cols) * (h + B), B + (k % cols) * (w + B)];
    for (let c = 0; c < channels; c++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const v = (images[((k * channels + c) * h + y) * w + x] - lo) / (hi - lo);
          out[((top + y) * W + left + x) * channels + c] = Math.round(
            Math.min(1, Math.max(0, v)) * 255,
          );
        }
      }
    }
  }
  return encodePng(out, W, H, channels);
}
