/**
 * Convolution benchmarks at the DCGAN sizes of the AutoLoss paper (batch 64, 28x28 MNIST, 5x5
 * kernels, stride 2, "same" padding as TensorFlow), with TF.js's WebGPU backend as the baseline of
 * each group (NHWC, its only conv layout; ours is NCHW):
 *
 * - conv2d D1 (1 -> 64 channels, 28x28 -> 14x14) and D2 (64 -> 128, 14x14 -> 7x7): forward, and
 *   forward + backward (input, weight and bias gradients of `sum(conv(x) * r)`);
 * - convTranspose2d G1 (128 -> 64, 7x7 -> 14x14): forward, and forward + backward;
 * - one full DCGAN training step: a D step (BCE with logits on a real and a generated batch) and a
 *   G step, each followed by an Adam update of its own parameters.
 *
 * Run: `npx -y deno@2.9.6 bench -A --no-lock bench/conv.bench.ts [--filter dcgan]` (about 4 minutes on a
 * 2-core llvmpipe machine, most of it TF.js; `--filter autoloss` skips the peers). One iteration =
 * one operation then one GPU wait (~11 ms on Deno; small next to these operations). Every entry
 * runs n = 2 iterations after one warmup (which absorbs pipeline compilation), the TF.js DCGAN
 * step n = 1. FLOPs are in the bench names (multiply-add = 2), so GFLOP/s = MFLOP / ms. A DCGAN
 * step is G forward + 2 x (D forward + backward) for the D step, then G and D forward + backward
 * for the G step: about 17.7 GFLOP at batch 64.
 * @module
 */

// deno-lint-ignore no-import-prefix
import * as tf from "npm:@tensorflow/tfjs-core@4.22.0";
import { backend, init } from "../gpu/backend.ts";
import { conv2d, convTranspose2d } from "../tensor/conv_ops.ts";
import { manualSeed } from "../tensor/ops.ts";
import { randn } from "../tensor/functional.ts";
import { noGrad, tidy } from "../tensor/tensor.ts";
import { initTfjs, tfjsSync } from "./tfjs_peer.ts";
import { dcganStep } from "./dcgan_step.ts";

const BATCH = 64;
const Z_DIM = 128;

/** One benchmarkable operation of either library. */
interface Bench {
  /** Runs one operation and waits for the GPU. */
  run(): Promise<void>;
  /** Frees everything the workload holds. */
  dispose(): void;
}

// ---------------------------------------------------------------- conv workloads

/** A convolution layer shape: NCHW input, kernel, output channels, transposed or not. */
interface ConvShape {
  /** Input channels. */
  cin: number;
  /** Output channels. */
  cout: number;
  /** Input height = width. */
  size: number;
  /** Transposed convolution (output `size * 2`) or convolution (output `size / 2`). */
  transposed: boolean;
}

const D1: ConvShape = { cin: 1, cout: 64, size: 28, transposed: false };
const D2: ConvShape = { cin: 64, cout: 128, size: 14, transposed: false };
const G1: ConvShape = { cin: 128, cout: 64, size: 7, transposed: true };

/** Forward FLOPs of a 5x5 stride-2 layer (2 per multiply-add, over the smaller image). */
function convFlops(s: ConvShape): number {
  const small = s.transposed ? s.size : s.size / 2;
  return 2 * BATCH * s.cin * s.cout * 25 * small * small;
}

function oursConv(s: ConvShape, backward: boolean): Bench {
  manualSeed(1);
  const out = s.transposed ? s.size * 2 : s.size / 2;
  const x = randn([BATCH, s.cin, s.size, s.size]).requiresGrad_(backward);
  const w = randn(s.transposed ? [s.cin, s.cout, 5, 5] : [s.cout, s.cin, 5, 5], 0, 0.02)
    .requiresGrad_(backward);
  const b = randn([s.cout]).requiresGrad_(backward);
  const r = randn([BATCH, s.cout, out, out]);
  const opts = { stride: 2, padding: "same" as const };
  const layer = () => s.transposed ? convTranspose2d(x, w, b, opts) : conv2d(x, w, b, opts);
  const leaves = [x, w, b];
  return {
    async run() {
      if (backward) {
        tidy(() => layer().mul(r).sum().backward());
        for (const t of leaves) {
          t.grad?.dispose();
          t.grad = null;
        }
      } else {
        noGrad(layer).dispose();
      }
      await backend().sync();
    },
    dispose() {
      for (const t of [...leaves, r]) t.dispose();
    },
  };
}

function tfjsConv(s: ConvShape, backward: boolean): Bench {
  const out = s.transposed ? s.size * 2 : s.size / 2;
  const x = tf.randomNormal([BATCH, s.size, s.size, s.cin], 0, 1, "float32", 1) as tf.Tensor4D;
  // TF.js filters: conv [h, w, in, out]; transposed conv [h, w, out, in].
  const w = tf.randomNormal(
    s.transposed ? [5, 5, s.cout, s.cin] : [5, 5, s.cin, s.cout],
    0,
    0.02,
    "float32",
    2,
  ) as tf.Tensor4D;
  const b = tf.randomNormal([s.cout], 0, 1, "float32", 3) as tf.Tensor1D;
  const r = tf.randomNormal([BATCH, out, out, s.cout], 0, 1, "float32", 4);
  const layer = (xx: tf.Tensor4D, ww: tf.Tensor4D, bb: tf.Tensor1D) =>
    tf.add(
      s.transposed
        ? tf.conv2dTranspose(xx, ww, [BATCH, out, out, s.cout], 2, "same")
        : tf.conv2d(xx, ww, 2, "same"),
      bb,
    );
  const grads = tf.grads((xx, ww, bb) =>
    tf.sum(tf.mul(layer(xx as tf.Tensor4D, ww as tf.Tensor4D, bb as tf.Tensor1D), r))
  );
  return {
    async run() {
      if (backward) tf.dispose(grads([x, w, b]));
      else tf.dispose(layer(x, w, b));
      await tfjsSync();
    },
    dispose() {
      tf.dispose([x, w, b, r]);
    },
  };
}

// ---------------------------------------------------------------- DCGAN step

/** The autoloss DCGAN step (bench/dcgan_step.ts), waiting for the backend after each. */
function oursDcgan(): Bench {
  const step = dcganStep(BATCH);
  return {
    async run() {
      step.step();
      await backend().sync();
    },
    dispose: () => step.dispose(),
  };
}

function tfjsDcgan(): Bench {
  let seed = 10;
  const init = (shape: number[], std = 0.02) =>
    tf.variable(tf.randomNormal(shape, 0, std, "float32", seed++));
  const zero = (shape: number[]) => tf.variable(tf.zeros(shape));
  const gv = {
    w: init([Z_DIM, 7 * 7 * 128]),
    b: zero([7 * 7 * 128]),
    k1: init([5, 5, 64, 128]),
    b1: zero([64]),
    k2: init([5, 5, 1, 64]),
    b2: zero([1]),
  };
  const dv = {
    k1: init([5, 5, 1, 64]),
    b1: zero([64]),
    k2: init([5, 5, 64, 128]),
    b2: zero([128]),
    w: init([7 * 7 * 128, 1]),
    b: zero([1]),
  };
  const gen = (z: tf.Tensor2D): tf.Tensor4D => {
    const h = tf.relu(tf.add(tf.matMul(z, gv.w), gv.b)).reshape([BATCH, 7, 7, 128]) as tf.Tensor4D;
    const h1 = tf.relu(
      tf.add(tf.conv2dTranspose(h, gv.k1 as tf.Tensor4D, [BATCH, 14, 14, 64], 2, "same"), gv.b1),
    ) as tf.Tensor4D;
    return tf.tanh(
      tf.add(tf.conv2dTranspose(h1, gv.k2 as tf.Tensor4D, [BATCH, 28, 28, 1], 2, "same"), gv.b2),
    );
  };
  const disc = (x: tf.Tensor4D): tf.Tensor2D => {
    const h1 = tf.leakyRelu(tf.add(tf.conv2d(x, dv.k1 as tf.Tensor4D, 2, "same"), dv.b1), 0.2);
    const h2 = tf.leakyRelu(
      tf.add(tf.conv2d(h1 as tf.Tensor4D, dv.k2 as tf.Tensor4D, 2, "same"), dv.b2),
      0.2,
    );
    return tf.add(tf.matMul(h2.reshape([BATCH, 7 * 7 * 128]), dv.w), dv.b) as tf.Tensor2D;
  };
  const real = tf.randomUniform([BATCH, 28, 28, 1], -1, 1, "float32", 5) as tf.Tensor4D;
  const ones = tf.ones([BATCH, 1]);
  const zeros = tf.zeros([BATCH, 1]);
  const optD = tf.train.adam(2e-4, 0.5, 0.999);
  const optG = tf.train.adam(2e-4, 0.5, 0.999);
  const bce = (labels: tf.Tensor, logits: tf.Tensor) =>
    tf.losses.sigmoidCrossEntropy(labels, logits);
  return {
    async run() {
      optD.minimize(
        () => {
          const fake = gen(tf.randomNormal([BATCH, Z_DIM]) as tf.Tensor2D);
          return tf.add(bce(ones, disc(real)), bce(zeros, disc(fake))) as tf.Scalar;
        },
        false,
        Object.values(dv),
      );
      optG.minimize(
        () => bce(ones, disc(gen(tf.randomNormal([BATCH, Z_DIM]) as tf.Tensor2D))) as tf.Scalar,
        false,
        Object.values(gv),
      );
      await tfjsSync();
    },
    dispose() {
      optD.dispose();
      optG.dispose();
      tf.dispose([...Object.values(gv), ...Object.values(dv), real, ones, zeros]);
    },
  };
}

// ---------------------------------------------------------------- registration

await init();
let tfjsReady = true;
try {
  await initTfjs();
} catch (e) {
  tfjsReady = false;
  console.error(`TF.js peers skipped: ${(e as Error).message}`);
}

/** The workload alive now; the previous one is freed when the next bench starts. */
let current: { key: string; bench: Bench } | null = null;

function workload(key: string, make: () => Bench): Bench {
  if (current?.key !== key) {
    current?.bench.dispose();
    current = null;
    current = { key, bench: make() };
  }
  return current.bench;
}

/**
 * Registers the TF.js baseline and ours for one workload in one group; `peerN` iterations for
 * TF.js (its DCGAN step takes over 30 s on llvmpipe).
 */
function pair(
  group: string,
  label: string,
  ours: () => Bench,
  peer: () => Bench,
  peerN = 2,
): void {
  if (tfjsReady) {
    Deno.bench({
      name: `tfjs ${label}`,
      group,
      baseline: true,
      n: peerN,
      warmup: 1,
      fn: () => workload(`tfjs ${label}`, peer).run(),
    });
  }
  Deno.bench({
    name: `autoloss ${label}`,
    group,
    n: 2,
    warmup: 1,
    fn: () => workload(`autoloss ${label}`, ours).run(),
  });
}

const layers: [string, ConvShape][] = [
  ["conv2d D1 1->64 28->14", D1],
  ["conv2d D2 64->128 14->7", D2],
  ["convTranspose2d G1 128->64 7->14", G1],
];
for (const [name, shape] of layers) {
  const mflop = convFlops(shape) / 1e6;
  pair(
    `${name} fwd`,
    `${name} fwd (${mflop.toFixed(0)} MFLOP)`,
    () => oursConv(shape, false),
    () => tfjsConv(shape, false),
  );
  pair(
    `${name} fwd+bwd`,
    `${name} fwd+bwd (${(3 * mflop).toFixed(0)} MFLOP)`,
    () => oursConv(shape, true),
    () => tfjsConv(shape, true),
  );
}
pair("dcgan step", "dcgan D+G step batch 64 (17.7 GFLOP)", oursDcgan, tfjsDcgan, 1);
