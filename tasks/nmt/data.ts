/**
 * Data for the multi-task translation task (paper section 4.3, appendix A.3), built offline.
 *
 * The paper's corpora (WIT3 TED de-en, TIGER, GermEval 2014) cannot be downloaded here. What we
 * use instead (../shared/reference/data-ecosystem.md section 2.3, option 2; tasks/nmt/README.md explains
 * the choice):
 *
 * - MT: English -> German sentence pairs from the Ding dictionary (Debian package `trans-de-en`,
 *   GPL-2+, read from /usr/share/trans/de-en at run time and never committed). Lines look like
 *   `Deutsch {m} | Beispiel. :: English | example.`; both sides split on ` | ` (and `; `) into
 *   aligned entries; we keep entries that are sentences on both sides (4+ words, ending in . ? !)
 *   without dictionary placeholders (`sth.`, `jdn.`), slashes or parentheses.
 * - POS and NER: SILVER labels on the English side of other Ding sentence pairs (disjoint from
 *   every MT split), from npm taggers: POS = the 17 Universal POS tags of `wink-nlp` with its
 *   trained English model; NER = BIO tags of PER/LOC/ORG from `compromise` plus DATE, TIME,
 *   DURATION, MONEY, PERCENT, CARDINAL, ORDINAL from `wink-nlp`'s entity recognizer.
 *
 * The shared encoder reads English, so the taggers tag English: German taggers on npm are rule
 * lists with poor coverage (see tasks/nmt/README.md). Preprocessing as the paper: tokenize, truecase
 * (English: the first word is lower-cased unless tagged PROPN or "I"; German: the first word
 * takes its most frequent casing elsewhere in the training targets), every digit replaced by 0,
 * sentences longer than `maxWords` dropped, a seeded 80/10/10 split per task. BPE (tasks/nmt/bpe.ts)
 * is learned on the MT training split, separately for source and target, and applied to all.
 * @module
 */

import { mulberry32 } from "../../nn/host_random.ts";
import { type Bpe, countWords, learnBpe } from "./bpe.ts";
import { BOS, EOS, PAD, SPECIALS, UNK } from "./model.ts";
import { UserError } from "../../util/errors.ts";
import {
  coarse,
  type EnglishTagger,
  loadEnglishTagger,
  truecaseEnglish,
  Truecaser,
} from "./tagger.ts";

/** Where Debian's `trans-de-en` installs the Ding dictionary. */
export const DING_PATH = "/usr/share/trans/de-en";

/** The command that installs the dictionary. */
export const DING_INSTALL = "apt-get update && apt-get install -y trans-de-en";

/** The dictionary is not installed (or not readable). */
export class DataMissingError extends UserError {
  /** Creates the error naming the path and the install command. */
  constructor(path: string, reason: string) {
    super(
      `the Ding German-English dictionary is missing: cannot read ${path} (${reason}).\n` +
        `Install Debian's trans-de-en package (GPL-2+, read at run time, never committed):\n` +
        `  ${DING_INSTALL}\n` +
        `(as root, or with sudo), or point data.path at a copy of the file.`,
    );
    this.name = "DataMissingError";
  }
}

/** Reads the dictionary text; a missing file gives a {@link DataMissingError} with the apt command. */
export async function readDing(path: string = DING_PATH): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (
      err instanceof Deno.errors.NotFound || err instanceof Deno.errors.PermissionDenied ||
      err instanceof Deno.errors.NotCapable
    ) {
      throw new DataMissingError(
        path,
        err instanceof Deno.errors.NotFound ? "not found" : "denied",
      );
    }
    throw err;
  }
}

/** One German/English sentence pair. */
export interface SentencePair {
  /** German sentence. */
  de: string;
  /** English sentence. */
  en: string;
}

/** Typographic quotes and dashes to ASCII, whitespace collapsed. */
export function normalizeText(s: string): string {
  return s
    .replace(/[„“”‟″]/g, '"')
    .replace(/[‚‘’‛′`´]/g, "'")
    .replace(/[–—]/g, "-")
    .replace(/\u00a0/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

const PLACEHOLDER = /\b(sth|sb|jdn|jdm|jds|etw)\.|\.\.\.|…/i;

const SENTENCE_END = /[.?!]["']?$/;

/** Whether a cleaned entry is a usable sentence (4+ words, sentence-final punctuation). */
function isSentence(s: string): boolean {
  return s.split(" ").length >= 4 && SENTENCE_END.test(s) && /^["']?\p{Lu}/u.test(s);
}

/**
 * The aligned sentence pairs of a Ding dictionary text, in file order, without duplicates (a
 * pair is dropped when its English or German side was seen before). Per line: `German :: English`,
 * both sides split on ` | ` into entries (kept only when both sides have the same count), each
 * entry on `; ` into alternatives (paired one to one when the counts agree, else only a single
 * alternative on both sides is used); annotations in `{}`, `[]` and `<>` removed; entries with
 * parentheses, slashes or dictionary placeholders (`sth.`, `jdn.`, `...`) skipped.
 */
export function parseDingPairs(text: string): SentencePair[] {
  const out: SentencePair[] = [];
  const seenEn = new Set<string>();
  const seenDe = new Set<string>();
  const clean = (s: string) =>
    normalizeText(s.replace(/\{[^}]*\}|\[[^\]]*\]|<[^>]*>/g, " ")).replace(/\s+([.?!,;:])/g, "$1");
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const sides = line.split(" :: ");
    if (sides.length !== 2) continue;
    const de = sides[0].split(" | ");
    const en = sides[1].split(" | ");
    if (de.length !== en.length) continue;
    for (let i = 0; i < de.length; i++) {
      const da = de[i].split("; ");
      const ea = en[i].split("; ");
      const n = da.length === ea.length ? da.length : 0;
      for (let j = 0; j < n; j++) {
        const d = clean(da[j]);
        const e = clean(ea[j]);
        if (!isSentence(d) || !isSentence(e)) continue;
        if (/[()/\\]/.test(d + e) || PLACEHOLDER.test(d) || PLACEHOLDER.test(e)) continue;
        if (seenEn.has(e) || seenDe.has(d)) continue;
        seenEn.add(e);
        seenDe.add(d);
        out.push({ de: d, en: e });
      }
    }
  }
  return out;
}

/** German tokens: words (with inner hyphens/apostrophes), numbers, and single punctuation marks. */
export function tokenizeGerman(s: string): string[] {
  return s.match(/[\p{L}\p{N}]+(?:['-][\p{L}\p{N}]+)*|[^\s\p{L}\p{N}]/gu) ?? [];
}

/** Every digit replaced by 0 (the paper's number normalization). */
export function normalizeNumbers(token: string): string {
  return token.replace(/\p{Nd}/gu, "0");
}

// ---------------------------------------------------------------- seeded splits

/** A seeded Fisher-Yates shuffle (a new array). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const r = mulberry32(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Train/valid/test parts of a list. */
export interface Splits<T> {
  /** Training part. */
  train: T[];
  /** Validation part. */
  valid: T[];
  /** Test part. */
  test: T[];
}

/** Splits `items` (already shuffled) 80/10/10 (train gets the rounding remainder). */
export function split801010<T>(items: readonly T[]): Splits<T> {
  const n = items.length;
  const nv = Math.round(n * 0.1);
  const nt = Math.round(n * 0.1);
  return {
    train: items.slice(0, n - nv - nt),
    valid: items.slice(n - nv - nt, n - nt),
    test: items.slice(n - nt),
  };
}

// ---------------------------------------------------------------- English tagging (silver)

/** Options of {@link buildNmtCorpus}. */
export interface NmtCorpusOptions {
  /** Dictionary file (default {@link DING_PATH}). */
  path?: string;
  /** Seed of the shuffle that assigns and splits sentences. */
  seed: number;
  /** Drop pairs with more than this many words (whitespace-separated) on either side. */
  maxWords: number;
  /** Use at most this many sentence pairs in all (after the shuffle; 0 = all). */
  limit: number;
  /** Shares of the pairs given to MT, POS and NER (disjoint; normalized to sum 1). */
  shares: { mt: number; pos: number; ner: number };
}

/** A translation example: tokenized, truecased, numbers normalized. */
export interface MtExample {
  /** English tokens (source). */
  src: string[];
  /** German tokens (target). */
  tgt: string[];
}

/** A tagging example: English tokens and one tag per token. */
export interface TagExample {
  /** English tokens (source). */
  src: string[];
  /** Tags, one per token. */
  tags: string[];
}

/** Label-quality statistics of the silver tags. */
export interface LabelQuality {
  /** Tokens where compromise gave a comparable coarse tag. */
  posCompared: number;
  /** Of those, tokens where wink's UPOS (coarsened) equals compromise's. */
  posAgreement: number;
  /** Fraction of NER tokens that are part of an entity. */
  nerEntityTokenFraction: number;
  /** Entities per type in the NER training split. */
  nerEntities: Record<string, number>;
  /** NER sentences with at least one entity (training split). */
  nerSentencesWithEntity: number;
}

/** The three tasks' splits as text, plus provenance and label statistics. */
export interface NmtCorpus {
  /** English -> German pairs. */
  mt: Splits<MtExample>;
  /** English UPOS tagging. */
  pos: Splits<TagExample>;
  /** English BIO entity tagging. */
  ner: Splits<TagExample>;
  /** Counts for the report. */
  stats: {
    /** Sentence pairs parsed from the dictionary (before the length limit). */
    dingPairs: number;
    /** Pairs within the length limit. */
    withinLength: number;
    /** Pairs used (after `limit`). */
    used: number;
  };
  /** Label quality of the silver tags. */
  quality: LabelQuality;
}

/**
 * Builds the corpus: parse the dictionary, drop long pairs, shuffle with `seed`, cut to `limit`,
 * assign disjoint shares to MT, POS and NER (the POS/NER shares keep only the English side), split
 * each 80/10/10, tag the English side, truecase, normalize numbers.
 */
export async function buildNmtCorpus(
  opts: NmtCorpusOptions,
  tagger?: EnglishTagger,
): Promise<NmtCorpus> {
  const text = await readDing(opts.path ?? DING_PATH);
  return buildNmtCorpusFromText(text, opts, tagger ?? (await loadEnglishTagger()));
}

/** {@link buildNmtCorpus} on dictionary text already read (tests use a small excerpt). */
export function buildNmtCorpusFromText(
  text: string,
  opts: NmtCorpusOptions,
  tagger: EnglishTagger,
): NmtCorpus {
  const pairs = parseDingPairs(text);
  const words = (s: string) => s.split(" ").length;
  const short = pairs.filter((p) => words(p.de) <= opts.maxWords && words(p.en) <= opts.maxWords);
  let pool = shuffled(short, opts.seed);
  if (opts.limit > 0) pool = pool.slice(0, opts.limit);
  const total = opts.shares.mt + opts.shares.pos + opts.shares.ner;
  if (!(total > 0) || [opts.shares.mt, opts.shares.pos, opts.shares.ner].some((s) => s < 0)) {
    throw new Error(
      `data.shares must be non-negative with a positive sum, got ${JSON.stringify(opts.shares)}`,
    );
  }
  const nMt = Math.round((pool.length * opts.shares.mt) / total);
  const nPos = Math.round((pool.length * opts.shares.pos) / total);
  const mtPairs = split801010(pool.slice(0, nMt));
  const posSents = split801010(pool.slice(nMt, nMt + nPos).map((p) => p.en));
  const nerSents = split801010(pool.slice(nMt + nPos).map((p) => p.en));

  // MT: English via wink (tokens, and POS for truecasing); German via the regex tokenizer.
  const mtRaw = (list: SentencePair[]) =>
    list.map((p) => {
      const { tokens, pos } = tagger.pos(p.en);
      return { src: truecaseEnglish(tokens, pos), tgt: tokenizeGerman(p.de) };
    });
  const mtText = {
    train: mtRaw(mtPairs.train),
    valid: mtRaw(mtPairs.valid),
    test: mtRaw(mtPairs.test),
  };
  const truecaser = new Truecaser(mtText.train.map((e) => e.tgt));
  const finishMt = (list: { src: string[]; tgt: string[] }[]): MtExample[] =>
    list.map((e) => ({
      src: e.src.map(normalizeNumbers),
      tgt: truecaser.apply(e.tgt).map(normalizeNumbers),
    }));
  const mt = {
    train: finishMt(mtText.train),
    valid: finishMt(mtText.valid),
    test: finishMt(mtText.test),
  };

  let posCompared = 0;
  let posAgree = 0;
  const tagPos = (list: string[], count: boolean): TagExample[] =>
    list.map((s) => {
      if (!count) {
        const { tokens, pos } = tagger.pos(s);
        return { src: truecaseEnglish(tokens, pos).map(normalizeNumbers), tags: pos };
      }
      const t = tagger.tag(s);
      t.posCheck.forEach((c, i) => {
        if (c === null) return;
        posCompared++;
        if (coarse(t.pos[i]) === c) posAgree++;
      });
      return { src: truecaseEnglish(t.tokens, t.pos).map(normalizeNumbers), tags: t.pos };
    });
  const pos = {
    train: tagPos(posSents.train, true),
    valid: tagPos(posSents.valid, false),
    test: tagPos(posSents.test, false),
  };
  const tagNer = (list: string[]): TagExample[] =>
    list.map((s) => {
      const t = tagger.tag(s);
      return { src: truecaseEnglish(t.tokens, t.pos).map(normalizeNumbers), tags: t.ner };
    });
  const ner = {
    train: tagNer(nerSents.train),
    valid: tagNer(nerSents.valid),
    test: tagNer(nerSents.test),
  };

  const nerEntities: Record<string, number> = {};
  let entityTokens = 0;
  let nerTokens = 0;
  let withEntity = 0;
  for (const e of ner.train) {
    nerTokens += e.tags.length;
    let any = false;
    for (const t of e.tags) {
      if (t === "O") continue;
      entityTokens++;
      any = true;
      if (t.startsWith("B-")) nerEntities[t.slice(2)] = (nerEntities[t.slice(2)] ?? 0) + 1;
    }
    if (any) withEntity++;
  }
  return {
    mt,
    pos,
    ner,
    stats: { dingPairs: pairs.length, withinLength: short.length, used: pool.length },
    quality: {
      posCompared,
      posAgreement: posCompared ? posAgree / posCompared : NaN,
      nerEntityTokenFraction: nerTokens ? entityTokens / nerTokens : 0,
      nerEntities,
      nerSentencesWithEntity: withEntity,
    },
  };
}

// ---------------------------------------------------------------- vocabularies and ids

/** A token vocabulary whose first four entries are the specials (PAD, UNK, BOS, EOS). */
export class Vocab {
  /** Tokens by id. */
  readonly tokens: readonly string[];
  readonly #ids = new Map<string, number>();

  /** Builds a vocabulary: the specials, then `tokens` (duplicates and specials skipped). */
  constructor(tokens: readonly string[]) {
    const all = [...SPECIALS];
    const seen = new Set(all);
    for (const t of tokens) {
      if (seen.has(t)) continue;
      seen.add(t);
      all.push(t);
    }
    this.tokens = all;
    all.forEach((t, i) => this.#ids.set(t, i));
  }

  /** Number of entries. */
  get size(): number {
    return this.tokens.length;
  }

  /** The id of `token` ({@link UNK} when unknown). */
  id(token: string): number {
    return this.#ids.get(token) ?? UNK;
  }

  /** Ids of tokens. */
  encode(tokens: readonly string[]): number[] {
    return tokens.map((t) => this.id(t));
  }

  /** Tokens of ids (specials other than UNK dropped). */
  decode(ids: readonly number[]): string[] {
    return ids.filter((i) => i !== PAD && i !== BOS && i !== EOS).map((i) =>
      this.tokens[i] ?? "<unk>"
    );
  }

  /** Tokens in frequency order (ties by code-unit order) from sentences. */
  static fromCorpus(sentences: readonly (readonly string[])[]): Vocab {
    const counts = countWords(sentences);
    const order = [...counts].sort((a, b) =>
      b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)
    );
    return new Vocab(order.map(([t]) => t));
  }
}

/** One example as ids: source pieces and target ids (without BOS/EOS). */
export interface IdExample {
  /** Source BPE piece ids. */
  src: number[];
  /** Target ids (BPE pieces for MT, tags for POS/NER). */
  tgt: number[];
  /** The target as words (MT only: the BLEU reference). */
  words?: string[];
}

/** A task's splits as ids. */
export type IdSplits = Splits<IdExample>;

/** The encoded corpus: BPE models, vocabularies, and ids per task and split. */
export interface EncodedCorpus {
  /** Source (English) BPE, learned on the MT training sources. */
  srcBpe: Bpe;
  /** Target (German) BPE, learned on the MT training targets. */
  tgtBpe: Bpe;
  /** Source vocabulary (BPE pieces of all training sources, MT, POS and NER). */
  srcVocab: Vocab;
  /** Output vocabularies by task: `mt` (German pieces), `pos`, `ner` (tags). */
  tgtVocab: Record<"mt" | "pos" | "ner", Vocab>;
  /** Ids by task. */
  data: Record<"mt" | "pos" | "ner", IdSplits>;
}

/** Options of {@link encodeCorpus}. */
export interface EncodeOptions {
  /** Source BPE merges (paper 10k). */
  srcMerges: number;
  /** Target BPE merges (paper 10k). */
  tgtMerges: number;
  /** Drop examples with more source pieces or target ids than this (0 = keep all). */
  maxTokens: number;
}

/**
 * Learns BPE on the MT training split (source and target separately), builds the vocabularies
 * from the training splits, and maps every split to ids. Tag vocabularies are the specials plus
 * the tags seen in training, sorted.
 */
export function encodeCorpus(corpus: NmtCorpus, opts: EncodeOptions): EncodedCorpus {
  const srcBpe = learnBpe(countWords(corpus.mt.train.map((e) => e.src)), opts.srcMerges);
  const tgtBpe = learnBpe(countWords(corpus.mt.train.map((e) => e.tgt)), opts.tgtMerges);
  const srcTrain = [
    ...corpus.mt.train.map((e) => srcBpe.encode(e.src)),
    ...corpus.pos.train.map((e) => srcBpe.encode(e.src)),
    ...corpus.ner.train.map((e) => srcBpe.encode(e.src)),
  ];
  const srcVocab = Vocab.fromCorpus(srcTrain);
  const mtVocab = Vocab.fromCorpus(corpus.mt.train.map((e) => tgtBpe.encode(e.tgt)));
  const tagVocab = (list: TagExample[]) =>
    new Vocab([...new Set(list.flatMap((e) => e.tags))].sort());
  const posVocab = tagVocab(corpus.pos.train);
  const nerVocab = tagVocab(corpus.ner.train);
  const keep = (e: IdExample) =>
    opts.maxTokens <= 0 || (e.src.length <= opts.maxTokens && e.tgt.length <= opts.maxTokens);
  const mapSplits = <T>(s: Splits<T>, f: (x: T) => IdExample): IdSplits => ({
    train: s.train.map(f).filter(keep),
    valid: s.valid.map(f).filter(keep),
    test: s.test.map(f).filter(keep),
  });
  return {
    srcBpe,
    tgtBpe,
    srcVocab,
    tgtVocab: { mt: mtVocab, pos: posVocab, ner: nerVocab },
    data: {
      mt: mapSplits(corpus.mt, (e) => ({
        src: srcVocab.encode(srcBpe.encode(e.src)),
        tgt: mtVocab.encode(tgtBpe.encode(e.tgt)),
        words: e.tgt,
      })),
      pos: mapSplits(corpus.pos, (e) => ({
        src: srcVocab.encode(srcBpe.encode(e.src)),
        tgt: posVocab.encode(e.tags),
      })),
      ner: mapSplits(corpus.ner, (e) => ({
        src: srcVocab.encode(srcBpe.encode(e.src)),
        tgt: nerVocab.encode(e.tags),
      })),
    },
  };
}
