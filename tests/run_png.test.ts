import assert from "node:assert/strict";
import { crc32, encodePng, imageGrid, PNG_SIGNATURE } from "../run/png.ts";

/** A minimal PNG decoder for 8-bit gray/RGB, checking the signature and every chunk CRC. */
async function decodePng(png: Uint8Array) {
  assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const chunks: { type: string; data: Uint8Array }[] = [];
  for (let at = 8; at < png.length;) {
    const len = view.getUint32(at);
    const type = new TextDecoder().decode(png.subarray(at + 4, at + 8));
    assert.equal(view.getUint32(at + 8 + len), crc32(png.subarray(at + 4, at + 8 + len)), type);
    chunks.push({ type, data: png.subarray(at + 8, at + 8 + len) });
    at += 12 + len;
  }
  assert.deepEqual(chunks.map((c) => c.type), ["IHDR", "IDAT", "IEND"]);
  const ihdr = new DataView(chunks[0].data.buffer, chunks[0].data.byteOffset, 13);
  const [width, height] = [ihdr.getUint32(0), ihdr.getUint32(4)];
  assert.equal(ihdr.getUint8(8), 8); // bit depth
  const channels = ihdr.getUint8(9) === 0 ? 1 : 3;
  const idat = new Blob([chunks[1].data.slice()]).stream()
    .pipeThrough(new DecompressionStream("deflate"));
  const raw = new Uint8Array(await new Response(idat).arrayBuffer());
  const stride = width * channels;
  assert.equal(raw.length, height * (stride + 1));
  const px = new Uint8Array(height * stride);
  const filters = new Set<number>();
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    filters.add(f);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? px[y * stride + i - channels] : 0;
      const b = y > 0 ? px[(y - 1) * stride + i] : 0;
      const c = y > 0 && i >= channels ? px[(y - 1) * stride + i - channels] : 0;
      const p = a + b - c;
      const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
      const pred = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][f];
      px[y * stride + i] = raw[y * (stride + 1) + 1 + i] + pred;
    }
  }
  return { width, height, channels, px, filters };
}

Deno.test("png: crc32 of a known string", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
});

Deno.test("png: grayscale and RGB round-trip", async () => {
  for (const channels of [1, 3] as const) {
    const [w, h] = [7, 5];
    const pixels = Uint8Array.from({ length: w * h * channels }, (_, i) => (i * 37 + 11) & 255);
    const out = await decodePng(await encodePng(pixels, w, h, channels));
    assert.deepEqual([out.width, out.height, out.channels], [w, h, channels]);
    assert.deepEqual(out.px, pixels);
    assert.deepEqual([...out.filters], [1]);
  }
  await assert.rejects(encodePng(new Uint8Array(3), 2, 2, 1), /3 bytes for 2x2x1/);
});

Deno.test("png: imageGrid tiles images with a 2-px border and maps the range", async () => {
  const [n, h, w] = [3, 2, 3];
  const images = new Float32Array(n * h * w);
  images.fill(-1, 0, 6).fill(1, 6, 12).fill(0, 12, 18);
  images[17] = 5; // clamped to 255
  const out = await decodePng(await imageGrid(images, n, h, w, 2, 2, [-1, 1]));
  assert.deepEqual([out.width, out.height, out.channels], [2 * (w + 2) + 2, 2 * (h + 2) + 2, 1]);
  const at = (x: number, y: number) => out.px[y * out.width + x];
  assert.equal(at(0, 0), 128); // border
  assert.equal(at(2, 2), 0); // image 0, value -1
  assert.equal(at(2 + w + 2, 2), 255); // image 1, value 1
  assert.equal(at(2, 2 + h + 2), 128); // image 2, value 0 -> 127.5 rounds to 128
  assert.equal(at(2 + w - 1, 2 + h + 2 + h - 1), 255); // image 2's clamped last pixel
  assert.equal(at(2 + w + 2, 2 + h + 2), 128); // empty fourth cell stays border gray
  const rgb = await decodePng(
    await imageGrid(new Float32Array(2 * 3 * 4).fill(1), 2, 2, 2, 1, 2, [0, 1], 3),
  );
  assert.equal(rgb.channels, 3);
  assert.throws(() => imageGrid(images, n, h, w, 1, 2, [0, 1]), /do not fit/);
});
