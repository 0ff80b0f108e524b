/**
 * "Did you mean ...?" suggestions by edit distance, for config keys, CLI flags and task names.
 * @module
 */

/** Levenshtein edit distance (insertions, deletions, substitutions) between `a` and `b`. */
export function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * The candidates closest to `word` (case-insensitive), all those tied at the smallest distance, or
 * [] when none is within `maxDistance` (default: a third of the word's length, at least 2, below
 * the length). `distance` defaults to {@link levenshtein}.
 */
export function closestAll(
  word: string,
  candidates: Iterable<string>,
  maxDistance: number = Math.min(word.length - 1, Math.max(2, Math.floor(word.length / 3))),
  distance: (a: string, b: string) => number = levenshtein,
): string[] {
  let best: string[] = [];
  let bestDistance = maxDistance + 1;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [[c], d];
    else if (d === bestDistance && best.length && !best.includes(c)) best.push(c);
  }
  return best;
}

/** The first of {@link closestAll}, or undefined. */
export function closest(
  word: string,
  candidates: Iterable<string>,
  maxDistance?: number,
  distance?: (a: string, b: string) => number,
): string | undefined {
  return closestAll(word, candidates, maxDistance, distance)[0];
}

/** `"; did you mean 'x'?"` (or `'x' or 'y'` on a tie), or `""` when nothing is close. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closestAll(word, candidates);
  return c.length ? `; did you mean ${c.map((x) => `'${x}'`).join(" or ")}?` : "";
}
