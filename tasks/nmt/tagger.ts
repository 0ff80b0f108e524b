/**
 * The silver labels of the nmt task's auxiliary tasks (tasks/nmt/data.ts): an English tagger
 * from npm packages loaded on first use (POS: the 17 Universal POS tags of `wink-nlp` with its
 * trained English model; NER: BIO tags of PER/LOC/ORG from `compromise` plus DATE, TIME,
 * DURATION, MONEY, PERCENT, CARDINAL, ORDINAL from `wink-nlp`'s entity recognizer), and the
 * truecasing of both sides.
 * @module
 */

/** UPOS tags produced by wink-nlp. */
export const UPOS: readonly string[] = [
  "ADJ",
  "ADP",
  "ADV",
  "AUX",
  "CCONJ",
  "DET",
  "INTJ",
  "NOUN",
  "NUM",
  "PART",
  "PRON",
  "PROPN",
  "PUNCT",
  "SCONJ",
  "SYM",
  "VERB",
  "X",
];

/** Entity types kept for NER (others tag O). */
export const NER_TYPES: readonly string[] = [
  "PER",
  "LOC",
  "ORG",
  "DATE",
  "TIME",
  "DURATION",
  "MONEY",
  "PERCENT",
  "CARDINAL",
  "ORDINAL",
];

/** A tagged English sentence (tokens as in the text, before truecasing and number mapping). */
export interface TaggedSentence {
  /** wink-nlp tokens. */
  tokens: string[];
  /** UPOS tag per token (wink-nlp). */
  pos: string[];
  /** BIO entity tag per token (compromise PER/LOC/ORG, wink-nlp numeric and time types). */
  ner: string[];
  /** compromise's tag per token mapped to a coarse UPOS class, or null (agreement check). */
  posCheck: (string | null)[];
}

/** A tagger for English sentences (loaded lazily from npm). */
export interface EnglishTagger {
  /** Tokens and UPOS tags only (fast; wink-nlp). */
  pos(sentence: string): { tokens: string[]; pos: string[] };
  /** Tokens, UPOS, BIO entities and compromise's coarse POS for the agreement check. */
  tag(sentence: string): TaggedSentence;
}

/** compromise tags to the UPOS class used for the agreement check (first match wins). */
const COMPROMISE_TO_UPOS: [string, string][] = [
  ["Pronoun", "PRON"],
  ["ProperNoun", "PROPN"],
  ["Auxiliary", "AUX"],
  ["Modal", "AUX"],
  ["Copula", "AUX"],
  ["Determiner", "DET"],
  ["Preposition", "ADP"],
  ["Conjunction", "CCONJ"],
  ["Adverb", "ADV"],
  ["Adjective", "ADJ"],
  ["Value", "NUM"],
  ["Verb", "VERB"],
  ["Noun", "NOUN"],
];

const WINK_NER: Record<string, string> = {
  DATE: "DATE",
  TIME: "TIME",
  DURATION: "DURATION",
  MONEY: "MONEY",
  PERCENT: "PERCENT",
  CARDINAL: "CARDINAL",
  ORDINAL: "ORDINAL",
};

/** Character spans of tokens found in order in `text` ([-1, -1] when not found). */
function tokenSpans(text: string, tokens: readonly string[]): [number, number][] {
  let at = 0;
  return tokens.map((t) => {
    const i = text.indexOf(t, at);
    if (i < 0) return [-1, -1];
    at = i + t.length;
    return [i, at];
  });
}

/**
 * Loads the npm taggers (`wink-nlp@2.4.0` with `wink-eng-lite-web-model@1.8.1`, and
 * `compromise@14.17.0`, all MIT) and returns an {@link EnglishTagger}.
 */
export async function loadEnglishTagger(): Promise<EnglishTagger> {
  // Computed specifiers: Deno installs every npm package it finds in the module graph at startup,
  // and only `compare|train nmt` needs these (tests/cli.test.ts checks the graph of cli.ts).
  // deno-lint-ignore no-explicit-any
  const load = async (spec: string): Promise<any> => (await import(spec)).default;
  const winkNLP = await load("npm:wink-nlp@2.4.0");
  const model = await load("npm:wink-eng-lite-web-model@1.8.1");
  const nlp = await load("npm:compromise@14.17.0");
  const wink = winkNLP(model);
  const its = wink.its;
  const read = (sentence: string) => {
    const doc = wink.readDoc(sentence);
    return { doc, tokens: doc.tokens().out(its.value) as string[] };
  };
  return {
    pos(sentence) {
      const { doc, tokens } = read(sentence);
      return { tokens, pos: doc.tokens().out(its.pos) as string[] };
    },
    tag(sentence) {
      const { doc, tokens } = read(sentence);
      const pos = doc.tokens().out(its.pos) as string[];
      const ner = new Array<string>(tokens.length).fill("O");
      const mark = (start: number, end: number, type: string) => {
        if (start > end || start < 0) return;
        // Never overwrite an entity already placed (compromise's PER/LOC/ORG go first).
        for (let i = start; i <= end; i++) if (ner[i] !== "O") return;
        for (let i = start; i <= end; i++) ner[i] = (i === start ? "B-" : "I-") + type;
      };
      const spans = tokenSpans(sentence, tokens);
      const c = nlp(sentence);
      for (
        const [method, type] of [["people", "PER"], ["places", "LOC"], ["organizations", "ORG"]]
      ) {
        for (const m of c[method]().json({ offset: true })) {
          const s = m.offset.start;
          const e = s + m.offset.length;
          const inside = spans.map(([a, b], i) => (a >= s && b <= e && a >= 0 ? i : -1))
            .filter((i) => i >= 0);
          // Trailing punctuation inside a compromise match ("Siemens.") is not part of the name.
          while (inside.length && pos[inside[inside.length - 1]] === "PUNCT") inside.pop();
          if (inside.length) mark(inside[0], inside[inside.length - 1], type);
        }
      }
      const ents = doc.entities();
      const details = ents.out(its.detail) as { type: string }[];
      const entSpans = ents.out(its.span) as [number, number][];
      details.forEach((d, i) => {
        const type = WINK_NER[d.type];
        if (type) mark(entSpans[i][0], entSpans[i][1], type);
      });
      // compromise's own POS, mapped to coarse UPOS, aligned by character offsets.
      const posCheck = new Array<string | null>(tokens.length).fill(null);
      for (const sent of c.json({ offset: true })) {
        for (const term of sent.terms) {
          const s = term.offset.start;
          const k = spans.findIndex(([a]) => a === s);
          if (k < 0) continue;
          const hit = COMPROMISE_TO_UPOS.find(([tag]) => term.tags.includes(tag));
          posCheck[k] = hit ? hit[1] : null;
        }
      }
      return { tokens, pos, ner, posCheck };
    },
  };
}

/** wink UPOS to the coarse class compared with compromise (SCONJ counts as CCONJ). */
export function coarse(upos: string): string {
  return upos === "SCONJ" ? "CCONJ" : upos;
}

// ---------------------------------------------------------------- truecasing

/** English truecasing: the first token lower-cased unless it is a proper noun or "I". */
export function truecaseEnglish(tokens: readonly string[], pos: readonly string[]): string[] {
  return tokens.map((t, i) => (i === 0 && pos[0] !== "PROPN" && t !== "I" ? t.toLowerCase() : t));
}

/**
 * A frequency truecaser (for German): learns, from non-initial tokens, each word's most frequent
 * casing, and rewrites sentence-initial tokens to it (unchanged when never seen elsewhere).
 */
export class Truecaser {
  readonly #best = new Map<string, string>();

  /** Learns casings from tokenized sentences. */
  constructor(sentences: readonly (readonly string[])[]) {
    const counts = new Map<string, Map<string, number>>();
    for (const s of sentences) {
      for (let i = 1; i < s.length; i++) {
        const key = s[i].toLowerCase();
        let m = counts.get(key);
        if (!m) counts.set(key, m = new Map());
        m.set(s[i], (m.get(s[i]) ?? 0) + 1);
      }
    }
    for (const [key, m] of counts) {
      let best = "";
      let n = -1;
      for (const [form, c] of [...m].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
        if (c > n) [best, n] = [form, c];
      }
      this.#best.set(key, best);
    }
  }

  /** The sentence with its first token truecased. */
  apply(tokens: readonly string[]): string[] {
    if (!tokens.length) return [];
    const first = this.#best.get(tokens[0].toLowerCase()) ?? tokens[0];
    return [first, ...tokens.slice(1)];
  }
}

// ---------------------------------------------------------------- the corpus
