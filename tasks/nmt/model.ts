/**
 * The multi-task sequence-to-sequence model of paper appendix A.3 (after Niehues and Cho 2017):
 * one shared encoder and one attentional decoder per task (MT, POS, NER). Greedy and beam
 * decoding and corpus BLEU: tasks/nmt/decode.ts.
 *
 * - Encoder: source embedding, a multi-layer bidirectional LSTM (paper: 2 layers of 256 units,
 *   embeddings 128), dropout on the embeddings, between layers and on the outputs.
 * - Decoder (one per task, own embedding): a multi-layer unidirectional LSTM (the authors' code
 *   is unidirectional despite the paper's wording) whose initial state is a `tanh` bridge of the
 *   encoder's final states, Luong "general" attention on the top layer (no input feeding, as the
 *   authors), the attentional state `tanh(W_c [c; h])`, dropout, and a linear output layer.
 * - Teacher forcing: without input feeding every decoder step is known in advance, so the whole
 *   target runs as one LSTM pass and one batched attention ({@link Seq2Seq.logits}).
 *
 * Token ids: 0 padding, 1 unknown, 2 begin, 3 end ({@link PAD}, {@link UNK}, {@link BOS},
 * {@link EOS}); every vocabulary in tasks/nmt/data.ts starts with these four.
 * @module
 */

import * as ops from "../../tensor/ops.ts";
import { Generator } from "../../gpu/random.ts";
import { Embedding, Linear } from "../../nn/layers.ts";
import { crossEntropy } from "../../nn/losses.ts";
import { Module } from "../../nn/module.ts";
import { LuongAttention } from "../../nn/attention.ts";
import { LSTM, type LSTMState } from "../../nn/rnn.ts";
import { bernoulli, tensor } from "../../tensor/functional.ts";
import { noGrad, type Tensor, tidy } from "../../tensor/tensor.ts";

/** Padding token id (ignored by the loss, masked in attention). */
export const PAD = 0;

/** Unknown token id. */
export const UNK = 1;

/** Begin-of-sequence token id (first decoder input). */
export const BOS = 2;

/** End-of-sequence token id (last decoder target). */
export const EOS = 3;

/** The special tokens, in id order. */
export const SPECIALS: readonly string[] = ["<pad>", "<unk>", "<s>", "</s>"];

/** Sizes of the model (paper: emb 128, hidden 256, 2 + 2 layers, dropout 0.3). */
export interface Seq2SeqSizes {
  /** Source vocabulary size (shared encoder). */
  srcVocab: number;
  /** Output vocabulary size of each decoder, by task name (e.g. `{ mt: 5000, pos: 21 }`). */
  decoders: Record<string, number>;
  /** Embedding size (source and target). */
  emb: number;
  /** Encoder LSTM units per direction. */
  hidden: number;
  /** Encoder layers. */
  encoderLayers: number;
  /** Decoder LSTM units. */
  decoderHidden: number;
  /** Decoder layers. */
  decoderLayers: number;
  /** Dropout probability (embeddings, between layers, encoder outputs, attentional states). */
  dropout: number;
}

/** A batch of padded token ids, as host arrays and uploaded tensors. */
export interface Seq2SeqBatch {
  /** Source ids, i32 [B, Ts], padded with {@link PAD}. */
  src: Tensor;
  /** Valid source lengths (host, 1..Ts). */
  srcLengths: number[];
  /** Decoder inputs, i32 [B, Tt]: {@link BOS} then the target, padded. */
  tgtIn: Tensor;
  /** Decoder targets, i32 [B, Tt]: the target then {@link EOS}, padded with {@link PAD}. */
  tgtOut: Tensor;
  /** Number of non-padding target tokens (host). */
  tokens: number;
}

/** Options of {@link makeBatch}. */
export interface BatchShape {
  /**
   * Round the padded source and target lengths up to a multiple of this (default 1: no rounding).
   * Kernels are compiled per tensor shape, so fewer distinct lengths mean fewer compilations.
   */
  bucket?: number;
}

/**
 * Pads sequences into a batch: `src[i]` and `tgt[i]` are token ids without specials (an empty
 * source becomes one UNK). The decoder sees `BOS + tgt` and predicts `tgt + EOS`; both padded with
 * {@link PAD} to the longest row, rounded up to a multiple of `shape.bucket`.
 */
export function makeBatch(
  src: readonly (readonly number[])[],
  tgt: readonly (readonly number[])[],
  shape: BatchShape = {},
): Seq2SeqBatch {
  if (src.length !== tgt.length || src.length === 0) {
    throw new Error(`makeBatch: ${src.length} sources for ${tgt.length} targets (need >= 1 each)`);
  }
  const bucket = Math.max(1, Math.floor(shape.bucket ?? 1));
  const round = (n: number) => Math.ceil(n / bucket) * bucket;
  const b = src.length;
  const ts = round(Math.max(1, ...src.map((s) => s.length)));
  const tt = round(Math.max(...tgt.map((t) => t.length)) + 1);
  const s = new Int32Array(b * ts);
  const ti = new Int32Array(b * tt);
  const to = new Int32Array(b * tt);
  const srcLengths: number[] = [];
  let tokens = 0;
  for (let r = 0; r < b; r++) {
    const row = src[r].length ? src[r] : [UNK];
    s.set(row, r * ts);
    srcLengths.push(row.length);
    ti[r * tt] = BOS;
    ti.set(tgt[r], r * tt + 1);
    to.set(tgt[r], r * tt);
    to[r * tt + tgt[r].length] = EOS;
    tokens += tgt[r].length + 1;
  }
  return {
    src: tensor(s, [b, ts], "i32"),
    srcLengths,
    tgtIn: tensor(ti, [b, tt], "i32"),
    tgtOut: tensor(to, [b, tt], "i32"),
    tokens,
  };
}

/** Frees a batch's tensors. */
export function disposeBatch(batch: Seq2SeqBatch): void {
  batch.src.dispose();
  batch.tgtIn.dispose();
  batch.tgtOut.dispose();
}

/** Multiplies a parameter in place by `factor` (init scaling; no autograd). */
function scaleInPlace(t: Tensor, factor: number): void {
  noGrad(() => {
    const scaled = t.mul(factor);
    ops.assign_(t, scaled);
    scaled.dispose();
  });
}

/** Inverted dropout with a seeded generator (identity when not training or p = 0). */
function drop(x: Tensor, p: number, training: boolean, gen: Generator): Tensor {
  if (!training || p === 0) return x;
  return x.mul(bernoulli([...x.shape], 1 - p, gen).mul(1 / (1 - p)));
}

/** What the encoder hands to a decoder. */
export interface EncoderOutput {
  /** Top-layer outputs `[B, Ts, 2H]` (the attention memory). */
  memory: Tensor;
  /** Final hidden states `[layers * 2, B, H]`. */
  h: Tensor;
  /** Final cell states `[layers * 2, B, H]`. */
  c: Tensor;
  /** Valid source lengths (host). */
  lengths: number[];
}

/** The shared encoder: embedding and bidirectional LSTM. Children `embed`, `lstm`. */
export class Encoder extends Module {
  /** Source embedding (padding row fixed at zero). */
  readonly embed: Embedding;
  /** The bidirectional LSTM stack. */
  readonly lstm: LSTM;
  /** Dropout probability. */
  readonly dropout: number;

  /** Creates the encoder. */
  constructor(
    vocab: number,
    emb: number,
    hidden: number,
    layers: number,
    dropout: number,
    gen: Generator,
  ) {
    super();
    this.dropout = dropout;
    this.embed = this.child("embed", new Embedding(vocab, emb, { paddingIdx: PAD, gen }));
    // Scale the N(0, 1) init down to the LSTM's input range.
    scaleInPlace(this.embed.weight, 0.1);
    this.lstm = this.child(
      "lstm",
      new LSTM(emb, hidden, { numLayers: layers, bidirectional: true, dropout, gen }),
    );
  }

  /** Encodes i32 `src` [B, Ts] with valid `lengths`. */
  forward(src: Tensor, lengths: number[], gen: Generator): EncoderOutput {
    const x = drop(this.embed.forward(src), this.dropout, this.training, gen);
    const out = this.lstm.forward(x, { lengths, gen });
    return {
      memory: drop(out.output, this.dropout, this.training, gen),
      h: out.h,
      c: out.c,
      lengths,
    };
  }
}

/**
 * One task's decoder. Children `embed`, `bridge_h`, `bridge_c` (encoder final states of a layer,
 * both directions, to the decoder layer's initial state), `lstm`, `attention` (with the combine
 * weight) and `out` (to the vocabulary).
 */
export class Decoder extends Module {
  /** Output vocabulary size. */
  readonly vocab: number;
  /** Target embedding. */
  readonly embed: Embedding;
  /** Initial hidden state from the encoder's final hidden states. */
  readonly bridgeH: Linear;
  /** Initial cell state from the encoder's final cell states. */
  readonly bridgeC: Linear;
  /** The decoder LSTM. */
  readonly lstm: LSTM;
  /** Luong attention on the top layer, producing the attentional state. */
  readonly attention: LuongAttention;
  /** Output projection. */
  readonly out: Linear;
  /** Dropout probability. */
  readonly dropout: number;

  /** Creates a decoder for `vocab` outputs attending over `memory` features. */
  constructor(
    vocab: number,
    emb: number,
    hidden: number,
    layers: number,
    encHidden: number,
    dropout: number,
    gen: Generator,
  ) {
    super();
    this.vocab = vocab;
    this.dropout = dropout;
    this.embed = this.child("embed", new Embedding(vocab, emb, { paddingIdx: PAD, gen }));
    scaleInPlace(this.embed.weight, 0.1);
    this.bridgeH = this.child("bridge_h", new Linear(2 * encHidden, hidden, { gen }));
    this.bridgeC = this.child("bridge_c", new Linear(2 * encHidden, hidden, { gen }));
    this.lstm = this.child("lstm", new LSTM(emb, hidden, { numLayers: layers, dropout, gen }));
    this.attention = this.child(
      "attention",
      new LuongAttention(hidden, 2 * encHidden, { outputSize: hidden, gen }),
    );
    this.out = this.child("out", new Linear(hidden, vocab, { gen }));
  }

  /**
   * The decoder's initial state from the encoder's final states: the top decoder layers read the
   * top encoder layers (decoder layer l reads encoder layer l + max(0, encoder layers - decoder
   * layers), capped at the top), both directions concatenated, through `tanh(Linear)`.
   */
  initialState(enc: EncoderOutput): LSTMState {
    const [ld, b, h] = enc.h.shape;
    const encLayers = ld / 2;
    const layers = this.lstm.numLayers;
    const perLayer = (s: Tensor) =>
      ops.reshape(ops.permute(ops.reshape(s, [encLayers, 2, b, h]), [0, 2, 1, 3]), [
        encLayers,
        b,
        2 * h,
      ]);
    const pick = (s: Tensor) => {
      const all = perLayer(s);
      if (layers === encLayers) return all;
      const rows = Array.from({ length: layers }, (_, l) => {
        const k = Math.min(l + Math.max(0, encLayers - layers), encLayers - 1);
        return ops.slice(all, [k, 0, 0], [k + 1, b, 2 * h]);
      });
      return rows.length === 1 ? rows[0] : ops.concat(rows, 0);
    };
    return {
      h: this.bridgeH.forward(pick(enc.h)).tanh(),
      c: this.bridgeC.forward(pick(enc.c)).tanh(),
    };
  }

  /** Attentional states to logits: dropout, then the output layer. */
  #project(att: Tensor, gen: Generator): Tensor {
    const x = drop(att, this.dropout, this.training, gen);
    if (x.ndim === 2) return this.out.forward(x);
    // As rows [B * T, H]: a [B, T, H] @ [H, V] product would give the weight gradient as B
    // per-batch copies [B, H, V] summed afterwards (tensor/autograd.ts matmul + unbroadcast).
    const h = x.shape[x.ndim - 1];
    const y = this.out.forward(x.reshape([x.size / h, h]));
    return y.reshape([...x.shape.slice(0, -1), this.vocab]);
  }

  /** Teacher-forced logits `[B, Tt, V]` for decoder inputs i32 `tgtIn` [B, Tt]. */
  forward(enc: EncoderOutput, tgtIn: Tensor, gen: Generator): Tensor {
    const x = drop(this.embed.forward(tgtIn), this.dropout, this.training, gen);
    const out = this.lstm.forward(x, { state: this.initialState(enc), gen });
    const att = this.attention.forward(out.output, enc.memory, { lengths: enc.lengths });
    return this.#project(att.output!, gen);
  }

  /**
   * One decoding step (eval mode, no autograd): input ids i32 [B] and the state; returns the
   * log-probabilities [B, V] and the next state.
   */
  step(
    enc: EncoderOutput,
    ids: Tensor,
    state: LSTMState,
    gen: Generator,
  ): { logProbs: Tensor; state: LSTMState } {
    const b = ids.size;
    const x = this.embed.forward(ids.reshape([b, 1]));
    const out = this.lstm.forward(x, { state, gen });
    const att = this.attention.forward(out.output.reshape([b, out.output.shape[2]]), enc.memory, {
      lengths: enc.lengths,
    });
    return {
      logProbs: this.#project(att.output!, gen).logSoftmax(-1),
      state: { h: out.h, c: out.c },
    };
  }
}

/** The multi-task model: child `encoder` and one child `decoder_<task>` per task. */
export class Seq2Seq extends Module {
  /** The sizes it was built with. */
  readonly sizes: Seq2SeqSizes;
  /** The shared encoder. */
  readonly encoder: Encoder;
  /** The decoders by task name. */
  readonly decoders: ReadonlyMap<string, Decoder>;
  /** Dropout masks are drawn from this generator (seeded at construction). */
  readonly gen: Generator;

  /** Builds and initializes the model from `seed`. */
  constructor(sizes: Seq2SeqSizes, seed = 0) {
    super();
    this.sizes = { ...sizes, decoders: { ...sizes.decoders } };
    const gen = new Generator(seed);
    this.gen = new Generator((seed ^ 0x5bd1e995) >>> 0);
    this.encoder = this.child(
      "encoder",
      new Encoder(sizes.srcVocab, sizes.emb, sizes.hidden, sizes.encoderLayers, sizes.dropout, gen),
    );
    const decoders = new Map<string, Decoder>();
    for (const [name, vocab] of Object.entries(sizes.decoders)) {
      decoders.set(
        name,
        this.child(
          `decoder_${name}`,
          new Decoder(
            vocab,
            sizes.emb,
            sizes.decoderHidden,
            sizes.decoderLayers,
            sizes.hidden,
            sizes.dropout,
            gen,
          ),
        ),
      );
    }
    this.decoders = decoders;
  }

  /** The FlatParams groups: `encoder` and `decoder_<task>` per task. */
  paramGroups(): Record<string, string[]> {
    const groups: Record<string, string[]> = { encoder: ["encoder."] };
    for (const name of this.decoders.keys()) groups[`decoder_${name}`] = [`decoder_${name}.`];
    return groups;
  }

  /** The decoder of `task` (throws listing the tasks). */
  decoder(task: string): Decoder {
    const d = this.decoders.get(task);
    if (!d) {
      throw new Error(`Seq2Seq: no decoder '${task}'; decoders: ${[...this.decoders.keys()]}`);
    }
    return d;
  }

  /** Encodes a batch's source. */
  encode(batch: Pick<Seq2SeqBatch, "src" | "srcLengths">): EncoderOutput {
    return this.encoder.forward(batch.src, batch.srcLengths, this.gen);
  }

  /** Teacher-forced logits `[B, Tt, V]` of `task`'s decoder. */
  logits(task: string, batch: Seq2SeqBatch): Tensor {
    return this.decoder(task).forward(this.encode(batch), batch.tgtIn, this.gen);
  }

  /** Mean per-token cross-entropy of `task` on `batch` (padding ignored), a scalar. */
  loss(task: string, batch: Seq2SeqBatch): Tensor {
    return crossEntropy(this.logits(task, batch), batch.tgtOut, { ignoreIndex: PAD });
  }

  /**
   * Summed (not averaged) token cross-entropy of `task` on `batch`, [1], without autograd and in
   * the current mode: for validation perplexity, add these up and divide by the token count.
   */
  lossSum(task: string, batch: Seq2SeqBatch): Tensor {
    return noGrad(() =>
      tidy(() =>
        crossEntropy(this.logits(task, batch), batch.tgtOut, {
          ignoreIndex: PAD,
          reduction: "sum",
        }).reshape([1])
      )
    );
  }
}

// ---------------------------------------------------------------- decoding
