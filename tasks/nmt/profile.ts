/**
 * The `profile nmt` workload: one MT training step of the task's encoder-decoder (Adam,
 * global-norm clip) on a synthetic batch of `train.batch` sentence pairs of 20 tokens over
 * vocabularies of 5000 (the corpus itself is not needed). bench/peer.ts and bench/lstm_scan.ts
 * time the same step ({@link syntheticMtStep}).
 * @module
 */

import { init } from "../../gpu/backend.ts";
import { FlatParams } from "../../nn/module.ts";
import { Adam, clipGradNorm } from "../../nn/optim.ts";
import type { ProfileWorkload } from "../../run/profile.ts";
import { resolveTaskConfig } from "../../run/session.ts";
import { type Tensor, tidy } from "../../tensor/tensor.ts";
import type { CommonOptions } from "../registry.ts";
import { NMT_SCHEMA } from "./config.ts";
import { disposeBatch, makeBatch, Seq2Seq, type Seq2SeqSizes } from "./model.ts";

/** Options of {@link syntheticMtStep}. */
export interface MtStepShape {
  /** Sentence pairs per batch. */
  batch: number;
  /** Source and target length. */
  length: number;
  /** Source and target vocabulary size. */
  vocab: number;
  /** The model (embedding, hidden sizes, layers). */
  model: Pick<
    Seq2SeqSizes,
    "emb" | "hidden" | "encoderLayers" | "decoderHidden" | "decoderLayers"
  >;
}

/** Deterministic token ids in [4, vocab). */
function ids(n: number, vocab: number, seed: number): number[] {
  let a = seed >>> 0;
  return Array.from({ length: n }, () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return 4 + (a % (vocab - 4));
  });
}

/**
 * One MT training step of the nmt encoder-decoder on a fixed synthetic batch: forward, token
 * cross-entropy, backward, global-norm clip 1, Adam (lr 1e-3); dropout off. `loss()` is the last
 * step's loss tensor (owned by the workload).
 */
export function syntheticMtStep(s: MtStepShape): ProfileWorkload & { loss(): Tensor } {
  const model = new Seq2Seq({
    srcVocab: s.vocab,
    decoders: { mt: s.vocab },
    ...s.model,
    dropout: 0,
  }, 1);
  const flat = new FlatParams(model.namedParameters(), model.paramGroups());
  const opt = new Adam(flat, { lr: 1e-3 });
  const src = Array.from({ length: s.batch }, (_, r) => ids(s.length, s.vocab, r + 1));
  // Target of length - 1 so that BOS + target (and target + EOS) are `length` long.
  const tgt = Array.from({ length: s.batch }, (_, r) => ids(s.length - 1, s.vocab, r + 1001));
  const batch = makeBatch(src, tgt);
  let last = tidy(() => model.loss("mt", batch).reshape([1]));
  const m = s.model;
  return {
    description: `nmt MT step: batch ${s.batch}, length ${s.length}, vocabularies ${s.vocab}, ` +
      `E${m.emb} H${m.hidden} x${m.encoderLayers} (bidirectional) / H${m.decoderHidden} x${m.decoderLayers}`,
    step() {
      last.dispose();
      last = tidy(() => {
        flat.zeroGrad();
        const loss = model.loss("mt", batch);
        loss.backward();
        clipGradNorm(flat, 1);
        opt.step("all");
        return loss.detach().reshape([1]);
      });
    },
    loss: () => last,
    dispose() {
      last.dispose();
      disposeBatch(batch);
      opt.dispose();
      flat.dispose();
    },
  };
}

/** The NMT step at the resolved config's model and batch sizes. */
export async function nmtWorkload(opts: CommonOptions): Promise<ProfileWorkload> {
  const cfg = await resolveTaskConfig(opts, NMT_SCHEMA, "nmt");
  await init();
  return syntheticMtStep({ batch: cfg.train.batch, length: 20, vocab: 5000, model: cfg.model });
}
