/**
 * Decoding and scoring for the nmt model (tasks/nmt/model.ts): {@link greedyDecode} keeps every
 * step on the GPU (argmax fed back, one read at the end); {@link beamDecode} reads each step's
 * log-probabilities back and keeps the beams on the host; {@link corpusBleu} is BLEU-4 (Papineni
 * et al. 2002) over a corpus, with the brevity penalty.
 * @module
 */

import * as ops from "../../tensor/ops.ts";
import type { LSTMState } from "../../nn/rnn.ts";
import { tensor } from "../../tensor/functional.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import { BOS, type EncoderOutput, EOS, PAD, type Seq2Seq, type Seq2SeqBatch } from "./model.ts";

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
