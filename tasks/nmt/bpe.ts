/**
 * Byte-pair encoding (Sennrich et al. 2016), our own: learned from word counts of a training
 * split, applied word by word, saved as JSON with the run.
 *
 * A word is split into characters with an end-of-word marker on the last one (`low` ->
 * `l o w</w>`, as subword-nmt), so pieces never cross word boundaries and decoding is just
 * concatenating pieces and cutting after each `</w>`. Learning repeats: count every adjacent
 * symbol pair (weighted by word frequency), merge the most frequent pair everywhere. Ties are
 * broken deterministically: the pair whose left symbol, then right symbol, is smallest in UTF-16
 * code-unit order wins. Learning stops after `merges` merges or when no pair occurs twice.
 *
 * Learning is incremental (pair counts, the words each pair occurs in, and a lazy max-heap), so
 * 10k merges over tens of thousands of word types take seconds, not minutes.
 * @module
 */

/** The end-of-word marker attached to a word's last symbol. */
export const END_OF_WORD = "</w>";

/** A learned BPE model as saved with a run. */
export interface BpeJson {
  /** Format tag. */
  format: "autoloss-bpe";
  /** Merges in the order learned: each pair of symbols joined into one. */
  merges: [string, string][];
}

/** The initial symbols of a word: its characters (code points), the last one marked. */
export function wordSymbols(word: string): string[] {
  const chars = Array.from(word);
  if (!chars.length) throw new Error("BPE: empty word");
  chars[chars.length - 1] += END_OF_WORD;
  return chars;
}

const SEP = "\u0000";

/** Orders pair keys: higher count first, then smaller left symbol, then smaller right symbol. */
function better(ca: number, ka: string, cb: number, kb: string): boolean {
  if (ca !== cb) return ca > cb;
  const [la, ra] = ka.split(SEP);
  const [lb, rb] = kb.split(SEP);
  if (la !== lb) return la < lb;
  return ra < rb;
}

/** A binary max-heap of (count, key) entries ordered by {@link better}. */
class PairHeap {
  #counts: number[] = [];
  #keys: string[] = [];

  get size(): number {
    return this.#keys.length;
  }

  push(count: number, key: string): void {
    this.#counts.push(count);
    this.#keys.push(key);
    let i = this.#keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!better(this.#counts[i], this.#keys[i], this.#counts[p], this.#keys[p])) break;
      this.#swap(i, p);
      i = p;
    }
  }

  pop(): [number, string] | null {
    const n = this.#keys.length;
    if (!n) return null;
    const top: [number, string] = [this.#counts[0], this.#keys[0]];
    const lastC = this.#counts.pop()!;
    const lastK = this.#keys.pop()!;
    if (n > 1) {
      this.#counts[0] = lastC;
      this.#keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < n - 1 && better(this.#counts[l], this.#keys[l], this.#counts[m], this.#keys[m])) {
          m = l;
        }
        if (r < n - 1 && better(this.#counts[r], this.#keys[r], this.#counts[m], this.#keys[m])) {
          m = r;
        }
        if (m === i) break;
        this.#swap(i, m);
        i = m;
      }
    }
    return top;
  }

  #swap(i: number, j: number): void {
    [this.#counts[i], this.#counts[j]] = [this.#counts[j], this.#counts[i]];
    [this.#keys[i], this.#keys[j]] = [this.#keys[j], this.#keys[i]];
  }
}

/** Merges every non-overlapping occurrence of (a, b) in `symbols`, left to right. */
function mergeSymbols(symbols: string[], a: string, b: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; i++) {
    if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
      out.push(a + b);
      i++;
    } else out.push(symbols[i]);
  }
  return out;
}

/**
 * Learns up to `merges` merges from word counts (e.g. the training split's tokens). Returns the
 * model; see the module doc for the tie-breaking rule.
 */
export function learnBpe(wordCounts: ReadonlyMap<string, number>, merges: number): Bpe {
  if (!Number.isInteger(merges) || merges < 0) {
    throw new Error(`learnBpe: merges must be a non-negative integer, got ${merges}`);
  }
  // Word types in a fixed order (sorted), so learning does not depend on map insertion order.
  const types = [...wordCounts.keys()].filter((w) => w.length > 0).sort();
  const words = types.map((w) => wordSymbols(w));
  const freq = types.map((w) => wordCounts.get(w)!);
  const counts = new Map<string, number>();
  const where = new Map<string, Set<number>>();
  const add = (wi: number, sign: number, changed: Set<string>) => {
    const s = words[wi];
    for (let i = 0; i + 1 < s.length; i++) {
      const key = s[i] + SEP + s[i + 1];
      counts.set(key, (counts.get(key) ?? 0) + sign * freq[wi]);
      if (sign > 0) {
        let set = where.get(key);
        if (!set) where.set(key, set = new Set());
        set.add(wi);
      }
      changed.add(key);
    }
  };
  const initial = new Set<string>();
  words.forEach((_, wi) => add(wi, 1, initial));
  const heap = new PairHeap();
  for (const key of initial) heap.push(counts.get(key)!, key);
  const learned: [string, string][] = [];
  while (learned.length < merges) {
    const top = heap.pop();
    if (!top) break;
    const [count, key] = top;
    if (counts.get(key) !== count) continue; // stale entry
    if (count < 2) break;
    const [a, b] = key.split(SEP);
    learned.push([a, b]);
    const changed = new Set<string>();
    const affected = [...(where.get(key) ?? [])].sort((x, y) => x - y);
    for (const wi of affected) {
      add(wi, -1, changed);
      words[wi] = mergeSymbols(words[wi], a, b);
      add(wi, 1, changed);
    }
    where.delete(key);
    for (const k of changed) {
      const c = counts.get(k)!;
      if (c > 0) heap.push(c, k);
      else counts.delete(k);
    }
  }
  return new Bpe(learned);
}

/** A learned BPE model: applies merges to words and joins pieces back into words. */
export class Bpe {
  /** The merges in learned order. */
  readonly merges: readonly (readonly [string, string])[];
  readonly #rank = new Map<string, number>();
  readonly #cache = new Map<string, string[]>();

  /** Wraps merges learned by {@link learnBpe} (or read from {@link BpeJson}). */
  constructor(merges: readonly (readonly [string, string])[]) {
    this.merges = merges.map(([a, b]) => [a, b] as const);
    this.merges.forEach(([a, b], i) => {
      const key = a + SEP + b;
      if (!this.#rank.has(key)) this.#rank.set(key, i);
    });
  }

  /**
   * The pieces of one word: starting from its characters, repeatedly apply the earliest-learned
   * merge present in the word (all its occurrences, left to right) until none applies.
   */
  encodeWord(word: string): string[] {
    const hit = this.#cache.get(word);
    if (hit) return hit;
    let s = wordSymbols(word);
    for (;;) {
      let best = -1;
      for (let i = 0; i + 1 < s.length; i++) {
        const r = this.#rank.get(s[i] + SEP + s[i + 1]);
        if (r !== undefined && (best < 0 || r < best)) best = r;
      }
      if (best < 0) break;
      const [a, b] = this.merges[best];
      s = mergeSymbols(s, a, b);
    }
    this.#cache.set(word, s);
    return s;
  }

  /** The pieces of a tokenized sentence. */
  encode(tokens: readonly string[]): string[] {
    return tokens.flatMap((t) => this.encodeWord(t));
  }

  /**
   * Words from pieces: concatenated, cut after each piece ending in `</w>` (a trailing piece
   * without the marker, e.g. a truncated output, still ends a word).
   */
  decode(pieces: readonly string[]): string[] {
    const words: string[] = [];
    let cur = "";
    for (const p of pieces) {
      if (p.endsWith(END_OF_WORD)) {
        words.push(cur + p.slice(0, -END_OF_WORD.length));
        cur = "";
      } else cur += p;
    }
    if (cur) words.push(cur);
    return words;
  }

  /** The model as JSON (saved with a run). */
  toJson(): BpeJson {
    return { format: "autoloss-bpe", merges: this.merges.map(([a, b]) => [a, b]) };
  }

  /** Reads a model saved by {@link Bpe.toJson}. */
  static fromJson(json: unknown): Bpe {
    const j = json as Partial<BpeJson> | null;
    if (
      !j || j.format !== "autoloss-bpe" || !Array.isArray(j.merges) ||
      j.merges.some((m) =>
        !Array.isArray(m) || m.length !== 2 || m.some((x) => typeof x !== "string")
      )
    ) {
      throw new Error("not an autoloss BPE model (expected {format: 'autoloss-bpe', merges})");
    }
    return new Bpe(j.merges);
  }
}

/** Word counts of tokenized sentences. */
export function countWords(sentences: readonly (readonly string[])[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of sentences) for (const w of s) m.set(w, (m.get(w) ?? 0) + 1);
  return m;
}
