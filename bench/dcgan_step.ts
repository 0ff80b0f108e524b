/**
 * The authors' MNIST DCGAN (AUTHORS_DCGAN of tasks/gan/model.ts: z 128, 64 filters, no batch
 * norm; dense weights [in, out]) and its D+G training step, shared by the benchmarks.
 * @module
 */

import { Conv2d, ConvTranspose2d } from "../nn/conv.ts";
import { normal, zerosInit } from "../nn/init.ts";
import { FlatParams, Module } from "../nn/module.ts";
import { bceWithLogits } from "../nn/losses.ts";
import { Adam } from "../nn/optim.ts";
import { manualSeed } from "../tensor/ops.ts";
import { full, rand, randn } from "../tensor/functional.ts";
import { noGrad, type Tensor, tidy } from "../tensor/tensor.ts";

const Z_DIM = 128;

/** A fully connected layer `x @ weight + bias` (weight [in, out]), DCGAN-initialized. */
class Dense extends Module {
  /** [in, out]. */
  readonly weight: Tensor;
  /** [out]. */
  readonly bias: Tensor;

  constructor(inDim: number, outDim: number) {
    super();
    this.weight = this.param("weight", normal([inDim, outDim], 0.02));
    this.bias = this.param("bias", zerosInit([outDim]));
  }

  forward(x: Tensor): Tensor {
    return x.matmul(this.weight).add(this.bias);
  }
}

/** G: z [N, 128] -> dense 7x7x128, relu -> deconv 5x5/2 64, relu -> deconv 5x5/2 1, tanh. */
class Generator extends Module {
  readonly fc = this.child("fc", new Dense(Z_DIM, 7 * 7 * 128));
  readonly up1 = this.child(
    "up1",
    new ConvTranspose2d(128, 64, 5, { stride: 2, padding: "same", init: "normal" }),
  );
  readonly up2 = this.child(
    "up2",
    new ConvTranspose2d(64, 1, 5, { stride: 2, padding: "same", init: "normal" }),
  );

  forward(z: Tensor): Tensor {
    const h = this.fc.forward(z).relu().reshape([z.shape[0], 128, 7, 7]);
    return this.up2.forward(this.up1.forward(h).relu()).tanh();
  }
}

/** D: x [N, 1, 28, 28] -> conv 5x5/2 64, leaky 0.2 -> conv 5x5/2 128, leaky -> dense 1 (logit). */
class Discriminator extends Module {
  readonly conv1 = this.child(
    "conv1",
    new Conv2d(1, 64, 5, { stride: 2, padding: "same", init: "normal" }),
  );
  readonly conv2 = this.child(
    "conv2",
    new Conv2d(64, 128, 5, { stride: 2, padding: "same", init: "normal" }),
  );
  readonly fc = this.child("fc", new Dense(7 * 7 * 128, 1));

  forward(x: Tensor): Tensor {
    const h = this.conv2.forward(this.conv1.forward(x).leakyRelu(0.2)).leakyRelu(0.2);
    return this.fc.forward(h.reshape([x.shape[0], 7 * 7 * 128]));
  }
}

/**
 * One D step then one G step of the authors' DCGAN at batch `batch` (Adam lr 2e-4, betas 0.5 and
 * 0.999, D's weight gradients computed in the G step as well): what bench/conv.bench.ts times
 * against TF.js and bench/peer.ts against PyTorch (bench/torch_peer.py `dcgan_authors_step`).
 */
export function dcganStep(batch: number): { step(): void; dispose(): void } {
  manualSeed(2);
  const g = new Generator();
  const d = new Discriminator();
  const named = [
    ...g.namedParameters("gen."),
    ...d.namedParameters("disc."),
  ] as [string, Tensor][];
  const flat = new FlatParams(named, { G: ["gen."], D: ["disc."] });
  const opt = new Adam(flat, { lr: 2e-4, betas: [0.5, 0.999] });
  const real = rand([batch, 1, 28, 28], -1, 1);
  const ones = full([batch, 1], 1);
  const zeros = full([batch, 1], 0);
  return {
    step() {
      tidy(() => {
        flat.zeroGrad();
        const fake = noGrad(() => g.forward(randn([batch, Z_DIM])));
        const loss = bceWithLogits(d.forward(real), ones).add(
          bceWithLogits(d.forward(fake), zeros),
        );
        loss.backward();
        opt.step("D");
      });
      tidy(() => {
        flat.zeroGrad();
        const loss = bceWithLogits(d.forward(g.forward(randn([batch, Z_DIM]))), ones);
        loss.backward();
        opt.step("G");
      });
    },
    dispose() {
      opt.dispose();
      flat.dispose();
      for (const t of [real, ones, zeros]) t.dispose();
    },
  };
}
