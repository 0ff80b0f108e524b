/**
 * The multi-task sequence-to-sequence model of paper appendix A.3 (after Niehues and Cho 2017):
 * one shared encoder and one attentional decoder per task (MT, POS, NER), plus greedy and beam
 * decoding and corpus BLEU.
 *
 * - Encoder: source embedding, a multi-layer bidirectional LSTM (paper: 2 layers of 256 units,
 *   embeddings 128), dropout on the embeddings, between layers and on the outputs.
 * - Decoder (one per task, own embedding): a multi-layer unidirectional LSTM (the authors' code
 *   is unidirectional despite the paper's wording) whose initial state is a `tanh` bridge of the
 *   encoder's final states, Luong "general" attention on the top layer (no input feeding, as the
 *   authors), the attentional state `tanh(W_c [c; h])`, dropout, and a linear output layer.
 * - Teacher forcing: without input feeding every decoder step is known in advance, so the whole
 *   target runs as one LSTM pass and one batched attention ({@link Seq2Seq.logits}).
 * - Decoding: {@link greedyDecode} keeps every step on the GPU (argmax fed back, one read at the
 *   end); {@link beamDecode} reads each step's log-probabilities back and keeps the beams on the
 *   host.
 * - {@link corpusBleu}: BLEU-4 (Papineni et al. 2002) over a corpus, with the brevity penalty.
 *
 * Token ids: 0 padding, 1 unknown, 2 begin, 3 end ({@link PAD}, {@link UNK}, {@link BOS},
 * {@link EOS}); every vocabulary in tasks/nmt/data.ts starts with these four.
 * @module
 */

import { Generator } from "../../gpu/random.ts";
import { Embedding, Linear } from "../../nn/layers.ts";
import { crossEntropy } from "../../nn/losses.ts";
import { Module } from "../../nn/module.ts";
import { LuongAttention } from "../../nn/attention.ts";
import { LSTM, type LSTMState } from "../../nn/rnn.ts";
import { bernoulli, tensor } from "../../tensor/functional.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";

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

/** Rows of LSTM states `[L, B, H]` picked along the batch by i32 `idx` [N]: `[L, N, H]`. */
function reorderStates(x: Tensor, idx: Tensor): Tensor {
  const [l, b, h] = x.shape;
  const flat = ops.permute(x, [1, 0, 2]).reshape([b, l * h]);
  return ops.permute(ops.gatherRows(flat, idx).reshape([idx.size, l, h]), [1, 0, 2]);
}

/** Strips everything from the first {@link EOS} on (and any padding). */
export function trimAtEos(ids: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] === EOS || ids[i] === PAD) break;
    out.push(ids[i]);
  }
  return out;
}

/**
 * Greedy decoding of `task` for a batch of sources, entirely on the GPU: each step's argmax is
 * the next input, and all `maxLen` steps are read back once. Returns the ids per row, cut at EOS.
 * The model must be in eval mode.
 */
export async function greedyDecode(
  model: Seq2Seq,
  task: string,
  batch: Pick<Seq2SeqBatch, "src" | "srcLengths">,
  maxLen: number,
): Promise<number[][]> {
  const dec = model.decoder(task);
  const b = batch.srcLengths.length;
  const ids = noGrad(() =>
    tidy(() => {
      const enc = model.encode(batch);
      let state = dec.initialState(enc);
      let prev = ops.fill_(ops.empty([b], "i32"), BOS);
      const steps: Tensor[] = [];
      for (let t = 0; t < maxLen; t++) {
        const r = dec.step(enc, prev, state, model.gen);
        prev = r.logProbs.argmax(-1);
        state = r.state;
        steps.push(prev.reshape([b, 1]));
      }
      return ops.concat(steps, 1);
    })
  );
  const [host] = await readMany([ids]);
  ids.dispose();
  return Array.from(
    { length: b },
    (_, r) => trimAtEos(host.subarray(r * maxLen, (r + 1) * maxLen)),
  );
}

/** Options of {@link beamDecode}. */
export interface BeamOptions {
  /** Beam width k (default 5, the authors'). */
  beam?: number;
  /** Maximum output length (without EOS). */
  maxLen: number;
  /** Length normalization exponent alpha: hypotheses are ranked by `logp / len^alpha` (default 1). */
  alpha?: number;
}

/**
 * Beam search for `task` over a batch of sources: B * k rows on the GPU; after each step the
 * log-probabilities are read back and each sentence keeps its k best continuations (ties broken
 * by the lower token id, then the lower beam). A hypothesis that emits EOS is finished; decoding
 * of a sentence stops once its best finished score beats every live beam's optimistic bound, or
 * at `maxLen`. Returns the best hypothesis per sentence (ids without EOS). Eval mode required.
 */
export async function beamDecode(
  model: Seq2Seq,
  task: string,
  batch: Pick<Seq2SeqBatch, "src" | "srcLengths">,
  opts: BeamOptions,
): Promise<number[][]> {
  const k = opts.beam ?? 5;
  const alpha = opts.alpha ?? 1;
  const dec = model.decoder(task);
  const b = batch.srcLengths.length;
  const rows = b * k;
  const v = dec.vocab;
  const repeat = Int32Array.from({ length: rows }, (_, r) => Math.floor(r / k));
  const lengths = Array.from(repeat, (s) => batch.srcLengths[s]);
  // Encode once, then repeat every sentence's memory and state k times (rows s*k .. s*k+k-1).
  const idx0 = tensor(repeat, [rows], "i32");
  const rowsOf = (t: Tensor) => ops.gatherRows(t.reshape([t.shape[0], -1]), idx0);
  const start = noGrad(() =>
    tidy(() => {
      const base = model.encode(batch);
      const e: EncoderOutput = {
        memory: rowsOf(base.memory).reshape([rows, ...base.memory.shape.slice(1)]),
        h: base.h,
        c: base.c,
        lengths: batch.srcLengths,
      };
      const init = dec.initialState(e);
      return { memory: e.memory, h: reorderStates(init.h, idx0), c: reorderStates(init.c, idx0) };
    })
  );
  idx0.dispose();
  const enc: EncoderOutput = { memory: start.memory, h: start.h, c: start.c, lengths };
  let state: LSTMState = { h: start.h, c: start.c };
  const scores = new Float64Array(rows).fill(-Infinity);
  for (let s = 0; s < b; s++) scores[s * k] = 0;
  const hyps: number[][] = Array.from({ length: rows }, () => []);
  const finished: { ids: number[]; score: number }[][] = Array.from({ length: b }, () => []);
  const done = new Array(b).fill(false);
  let prev = new Int32Array(rows).fill(BOS);
  try {
    for (let t = 0; t < opts.maxLen && done.some((d) => !d); t++) {
      const out = noGrad(() =>
        tidy(() => {
          const r = dec.step(enc, tensor(prev, [rows], "i32"), state, model.gen);
          return { logProbs: r.logProbs, h: r.state.h, c: r.state.c };
        })
      );
      const [lp] = await readMany([out.logProbs]);
      out.logProbs.dispose();
      const parents = new Int32Array(rows);
      const nextIds = new Int32Array(rows);
      const nextScores = new Float64Array(rows).fill(-Infinity);
      const nextHyps: number[][] = new Array(rows);
      for (let s = 0; s < b; s++) {
        if (done[s]) {
          for (let j = 0; j < k; j++) {
            parents[s * k + j] = s * k;
            nextIds[s * k + j] = PAD;
            nextHyps[s * k + j] = [];
          }
          continue;
        }
        // Candidates: (score, beam, token), best first; keep the 2k best to survive EOS picks.
        const cands: [number, number, number][] = [];
        for (let j = 0; j < k; j++) {
          const r = s * k + j;
          if (scores[r] === -Infinity) continue;
          for (let tok = 0; tok < v; tok++) {
            if (tok === PAD || tok === BOS) continue;
            const sc = scores[r] + lp[r * v + tok];
            if (cands.length < 2 * k || sc > cands[cands.length - 1][0]) {
              cands.push([sc, j, tok]);
              cands.sort((x, y) => y[0] - x[0] || x[2] - y[2] || x[1] - y[1]);
              if (cands.length > 2 * k) cands.pop();
            }
          }
        }
        let live = 0;
        for (const [sc, j, tok] of cands) {
          const r = s * k + j;
          const last = t === opts.maxLen - 1;
          if (tok === EOS || last) {
            const ids = tok === EOS ? hyps[r] : [...hyps[r], tok];
            finished[s].push({ ids, score: sc / Math.max(ids.length + 1, 1) ** alpha });
            continue;
          }
          if (live < k) {
            const dst = s * k + live;
            parents[dst] = r;
            nextIds[dst] = tok;
            nextScores[dst] = sc;
            nextHyps[dst] = [...hyps[r], tok];
            live++;
          }
        }
        for (let j = live; j < k; j++) {
          parents[s * k + j] = s * k;
          nextIds[s * k + j] = PAD;
          nextHyps[s * k + j] = [];
        }
        // Stop when k hypotheses are finished and no live beam can beat the best of them (log
        // probabilities only fall, so a live beam's normalized score is bounded by its current
        // score over the longest possible length).
        if (finished[s].length >= k || live === 0) {
          const best = Math.max(...finished[s].map((f) => f.score));
          const bound = Math.max(
            -Infinity,
            ...Array.from({ length: live }, (_, j) => {
              const sc = nextScores[s * k + j];
              return sc / (opts.maxLen + 1) ** alpha;
            }),
          );
          if (live === 0 || best >= bound) done[s] = true;
        }
      }
      // Reorder the states by parent beam.
      const idx = tensor(parents, [rows], "i32");
      const nh = keep(noGrad(() => tidy(() => reorderStates(out.h, idx))));
      const nc = keep(noGrad(() => tidy(() => reorderStates(out.c, idx))));
      for (const x of [idx, out.h, out.c, state.h, state.c]) x.dispose();
      state = { h: nh, c: nc };
      scores.set(nextScores);
      for (let r = 0; r < rows; r++) hyps[r] = nextHyps[r];
      prev = nextIds;
    }
  } finally {
    state.h.dispose();
    state.c.dispose();
    enc.memory.dispose();
  }
  return finished.map((f, s) => {
    if (!f.length) return hyps[s * k];
    let best = f[0];
    for (const x of f) if (x.score > best.score) best = x;
    return best.ids;
  });
}

// ---------------------------------------------------------------- BLEU

/** BLEU statistics of a corpus. */
export interface BleuResult {
  /** BLEU in [0, 1] (multiply by 100 for the usual scale). */
  bleu: number;
  /** Modified n-gram precisions p_1..p_4. */
  precisions: number[];
  /** Brevity penalty. */
  brevityPenalty: number;
  /** Total hypothesis length c. */
  hypLength: number;
  /** Total reference length r. */
  refLength: number;
}

function ngramCounts(tokens: readonly string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join("\u0001");
    m.set(key, (m.get(key) ?? 0) + 1);
  }
  return m;
}

/**
 * Corpus BLEU-4 with one reference per sentence: clipped n-gram matches and totals summed over
 * the corpus (n = 1..4), `p_n = matches_n / totals_n`, geometric mean with uniform weights, times
 * the brevity penalty `exp(1 - r/c)` when c < r (1 otherwise). No smoothing: any p_n = 0 gives
 * BLEU 0, as in Papineni et al. and sacreBLEU's default.
 */
export function corpusBleu(
  hypotheses: readonly (readonly string[])[],
  references: readonly (readonly string[])[],
  maxN = 4,
): BleuResult {
  if (hypotheses.length !== references.length) {
    throw new Error(
      `corpusBleu: ${hypotheses.length} hypotheses for ${references.length} references`,
    );
  }
  const matches = new Array(maxN).fill(0);
  const totals = new Array(maxN).fill(0);
  let c = 0;
  let r = 0;
  hypotheses.forEach((hyp, i) => {
    const ref = references[i];
    c += hyp.length;
    r += ref.length;
    for (let n = 1; n <= maxN; n++) {
      const h = ngramCounts(hyp, n);
      const rc = ngramCounts(ref, n);
      for (const [g, cnt] of h) matches[n - 1] += Math.min(cnt, rc.get(g) ?? 0);
      totals[n - 1] += Math.max(hyp.length - n + 1, 0);
    }
  });
  const precisions = matches.map((m, i) => (totals[i] > 0 ? m / totals[i] : 0));
  const brevityPenalty = c === 0 ? 0 : c < r ? Math.exp(1 - r / c) : 1;
  const logMean = precisions.some((p) => p === 0)
    ? -Infinity
    : precisions.reduce((s, p) => s + Math.log(p), 0) / maxN;
  return {
    bleu: brevityPenalty * Math.exp(logMean),
    precisions,
    brevityPenalty,
    hypLength: c,
    refLength: r,
  };
}
