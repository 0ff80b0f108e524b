/**
 * The multi-task translation task: BPE (merge order against a hand computation, round trips),
 * the data pipeline (Ding line parsing and pair alignment, splits, tag vocabularies, ids that
 * decode back to the text), teacher-forced decoding shapes and gradient routing, greedy and beam
 * decoding shapes, and corpus BLEU against a hand computation. Everything is tiny; the taggers
 * are replaced by a deterministic stub except in one test of the real npm taggers.
 */

import assert from "node:assert/strict";
import { readMany, tidy } from "../tensor/tensor.ts";
import { FlatParams } from "../nn/module.ts";
import { Bpe, countWords, END_OF_WORD, learnBpe } from "../tasks/nmt/bpe.ts";
import {
  buildNmtCorpusFromText,
  DataMissingError,
  DING_INSTALL,
  encodeCorpus,
  normalizeNumbers,
  parseDingPairs,
  readDing,
  split801010,
  tokenizeGerman,
} from "../tasks/nmt/data.ts";
import { type EnglishTagger, loadEnglishTagger, Truecaser, UPOS } from "../tasks/nmt/tagger.ts";
import { disposeBatch, EOS, makeBatch, PAD, Seq2Seq } from "../tasks/nmt/model.ts";
import { beamDecode, corpusBleu, greedyDecode } from "../tasks/nmt/decode.ts";
import { BatchIterator } from "../tasks/nmt/batches.ts";
import { cliProcess, setup, tinyNmtSets, writeDictionary } from "./helpers.ts";

// ------------------------------------------------------------------ BPE

const SENNRICH = new Map([["low", 5], ["lower", 2], ["newest", 6], ["widest", 3]]);

Deno.test("bpe: merge order on Sennrich's example, ties broken by the smaller left symbol", () => {
  const w = END_OF_WORD;
  // Hand computation: (e,s) and (s,t</w>) tie at 9 -> "e" < "s"; then (es,t</w>) 9; (l,o) 7;
  // (n,e), (e,w), (w,est</w>) tie at 6 -> (e,w); then (ew,est</w>) 6 beats (n,ew) 6; (n,ewest</w>)
  // 6; (lo,w</w>) 5; (d,est</w>), (i,d), (w,i) tie at 3 -> (d,est</w>), then (i,dest</w>),
  // (w,idest</w>); (e,r</w>), (lo,w), (w,e) tie at 2 -> (e,r</w>), (lo,w), (low,er</w>).
  const expected = [
    ["e", "s"],
    ["es", "t" + w],
    ["l", "o"],
    ["e", "w"],
    ["ew", "est" + w],
    ["n", "ewest" + w],
    ["lo", "w" + w],
    ["d", "est" + w],
    ["i", "dest" + w],
    ["w", "idest" + w],
    ["e", "r" + w],
    ["lo", "w"],
    ["low", "er" + w],
  ];
  const bpe = learnBpe(SENNRICH, 100);
  assert.deepEqual(bpe.merges, expected, "stops when no pair occurs twice");
  assert.deepEqual(learnBpe(SENNRICH, 7).merges, expected.slice(0, 7));
  // The result does not depend on the map's insertion order.
  const reversed = new Map([...SENNRICH].reverse());
  assert.deepEqual(learnBpe(reversed, 100).merges, expected);
  // Applying: earliest merge first.
  assert.deepEqual(bpe.encodeWord("lowest"), ["low", "est" + w]);
  assert.deepEqual(learnBpe(SENNRICH, 3).encodeWord("lowest"), ["lo", "w", "est" + w]);
  assert.deepEqual(bpe.encodeWord("newest"), ["newest" + w]);
});

Deno.test("bpe: round trip of sentences, unseen words and characters; JSON round trip", () => {
  const sentences = [
    ["der", "Hund", "schläft", "."],
    ["die", "Katze", "schläft", "nicht", "."],
    ["der", "Hund", "bellt", "laut", "!"],
  ];
  const bpe = learnBpe(countWords(sentences), 20);
  for (const s of [...sentences, ["Schläfer", "xyzß", "0000", "'s"]]) {
    const pieces = bpe.encode(s);
    assert.ok(pieces.length >= s.length);
    assert.deepEqual(bpe.decode(pieces), s);
  }
  const again = Bpe.fromJson(JSON.parse(JSON.stringify(bpe.toJson())));
  assert.deepEqual(again.merges, bpe.merges);
  assert.deepEqual(again.encode(["Hundeschläfer"]), bpe.encode(["Hundeschläfer"]));
  assert.throws(() => Bpe.fromJson({ merges: [] }), /not an autoloss BPE model/);
});

// ------------------------------------------------------------------ data pipeline

/** A made-up excerpt in the Ding format (not taken from the dictionary). */
const DING_EXCERPT = [
  "# Version :: test",
  "Haus {n} | Das Haus ist sehr alt. | Wir wohnen in einem kleinen Haus. :: house | The house is very old. | We live in a small house.",
  "Baum {m} [bot.] | Der Baum hat 12 Äste. :: tree | The tree has 12 branches.",
  "gehen {vi} | Wir gehen jetzt nach Hause. | Er geht. :: to go | We are going home now.",
  "etw. tun | Er hat etw. getan. :: to do sth. | He did sth. yesterday.",
  "Katze {f} | Die Katze schläft auf dem Sofa.; Die Katze liegt auf dem Sofa. :: cat | The cat sleeps on the sofa.; The cat lies on the sofa.",
  "Duplikat | Das Haus ist sehr alt. :: duplicate | The house is very old.",
  "Hund {m} | Der Hund bellt (laut) im Garten. :: dog | The dog barks (loudly) in the garden.",
  "Auto {n} | „Das Auto fährt schnell“, sagte er. :: car | “The car goes fast”, he said.",
  "Vogel {m} | Der Vogel singt am Morgen. :: bird | The bird sings in the morning.",
].join("\n");

Deno.test("data: Ding lines give aligned sentence pairs; the rest is skipped", () => {
  const pairs = parseDingPairs(DING_EXCERPT);
  assert.deepEqual(pairs, [
    { de: "Das Haus ist sehr alt.", en: "The house is very old." },
    { de: "Wir wohnen in einem kleinen Haus.", en: "We live in a small house." },
    { de: "Der Baum hat 12 Äste.", en: "The tree has 12 branches." },
    // "gehen": 3 German entries vs 2 English ones -> not aligned, skipped.
    // "etw. tun": placeholders, skipped.
    { de: "Die Katze schläft auf dem Sofa.", en: "The cat sleeps on the sofa." },
    { de: "Die Katze liegt auf dem Sofa.", en: "The cat lies on the sofa." },
    // "Duplikat": seen before; "Hund": parentheses.
    { de: '"Das Auto fährt schnell", sagte er.', en: '"The car goes fast", he said.' },
    { de: "Der Vogel singt am Morgen.", en: "The bird sings in the morning." },
  ]);
  assert.deepEqual(tokenizeGerman('"Das Auto fährt schnell", sagte er.'), [
    '"',
    "Das",
    "Auto",
    "fährt",
    "schnell",
    '"',
    ",",
    "sagte",
    "er",
    ".",
  ]);
  assert.equal(normalizeNumbers("12,5%"), "00,0%");
  assert.deepEqual(split801010([...Array(10).keys()]), {
    train: [0, 1, 2, 3, 4, 5, 6, 7],
    valid: [8],
    test: [9],
  });
  const tc = new Truecaser([["Wir", "sehen", "das", "Haus"], ["das", "ist", "gut"]]);
  assert.deepEqual(tc.apply(["Das", "Haus"]), ["das", "Haus"]);
  assert.deepEqual(tc.apply(["Haus", "ist"]), ["Haus", "ist"]);
});

Deno.test("data: a missing dictionary names the apt command", async () => {
  await assert.rejects(
    () => readDing("/nonexistent/trans/de-en"),
    (err: unknown) => err instanceof DataMissingError && err.message.includes(DING_INSTALL),
  );
  assert.match(DING_INSTALL, /apt-get install -y trans-de-en/);
});

/** A deterministic stand-in for the npm taggers: NOUN for capitalized words, PUNCT, else X. */
const STUB_TAGGER: EnglishTagger = {
  pos(sentence) {
    const tokens = sentence.match(/\w+|[^\s\w]/g) ?? [];
    const pos = tokens.map((t) => (/^\W$/.test(t) ? "PUNCT" : /^\d/.test(t) ? "NUM" : "NOUN"));
    return { tokens, pos };
  },
  tag(sentence) {
    const { tokens, pos } = this.pos(sentence);
    const ner = tokens.map((t) => (/^\d/.test(t) ? "B-CARDINAL" : "O"));
    return { tokens, pos, ner, posCheck: pos.map(() => null) };
  },
};

Deno.test("data: splits are disjoint, pairs stay aligned through BPE and ids, tag vocabularies", () => {
  const name = (i: number) => "Rex" + "abcdefghij"[i % 10] + "abcdefghij"[Math.floor(i / 10)];
  const line = (i: number) =>
    `Wort | Der Hund ${name(i)} der Nummer ${i} schläft. :: word | ` +
    `The dog ${name(i)} of number ${i} sleeps today.`;
  const lines = Array.from({ length: 60 }, (_, i) => line(i));
  const corpus = buildNmtCorpusFromText(lines.join("\n"), {
    seed: 3,
    maxWords: 10,
    limit: 0,
    shares: { mt: 0.5, pos: 0.25, ner: 0.25 },
  }, STUB_TAGGER);
  const count = (s: { train: unknown[]; valid: unknown[]; test: unknown[] }) =>
    s.train.length + s.valid.length + s.test.length;
  assert.equal(count(corpus.mt), 30);
  assert.equal(count(corpus.pos), 15);
  assert.equal(count(corpus.ner), 15);
  assert.deepEqual([corpus.mt.train.length, corpus.mt.valid.length, corpus.mt.test.length], [
    24,
    3,
    3,
  ]);
  // MT pairs stay aligned: the number in the English source is the number in the German target.
  for (const e of [...corpus.mt.train, ...corpus.mt.valid, ...corpus.mt.test]) {
    assert.equal(e.src[0], "the", "English truecased");
    assert.equal(e.tgt[0], "der", "German truecased from the training targets");
    const both = `${e.src.join(" ")} / ${e.tgt.join(" ")}`;
    assert.equal(e.src[2], e.tgt[2], `aligned: ${both}`);
    assert.equal(e.src[5], e.tgt[5], `aligned: ${both}`);
    assert.match(e.src[5], /^0+$/, "numbers normalized");
  }
  // Disjoint: every English sentence is used once across tasks and splits.
  const key = (s: string[]) => s.join(" ");
  const all = [
    ...[...corpus.mt.train, ...corpus.mt.valid, ...corpus.mt.test].map((e) => key(e.src)),
    ...[...corpus.pos.train, ...corpus.pos.valid, ...corpus.pos.test].map((e) => key(e.src)),
    ...[...corpus.ner.train, ...corpus.ner.valid, ...corpus.ner.test].map((e) => key(e.src)),
  ];
  assert.equal(all.length, 60);
  assert.equal(new Set(all).size, all.length);
  for (const e of corpus.pos.train) assert.equal(e.src.length, e.tags.length);
  const enc = encodeCorpus(corpus, { srcMerges: 50, tgtMerges: 50, maxTokens: 0 });
  assert.deepEqual(enc.tgtVocab.pos.tokens, [
    "<pad>",
    "<unk>",
    "<s>",
    "</s>",
    "NOUN",
    "NUM",
    "PUNCT",
  ]);
  assert.deepEqual(enc.tgtVocab.ner.tokens, ["<pad>", "<unk>", "<s>", "</s>", "B-CARDINAL", "O"]);
  corpus.mt.train.forEach((e, i) => {
    const ids = enc.data.mt.train[i];
    assert.deepEqual(enc.srcBpe.decode(enc.srcVocab.decode(ids.src)), e.src);
    assert.deepEqual(enc.tgtBpe.decode(enc.tgtVocab.mt.decode(ids.tgt)), e.tgt);
    assert.deepEqual(ids.words, e.tgt);
  });
  corpus.pos.train.forEach((e, i) => {
    const ids = enc.data.pos.train[i];
    assert.deepEqual(enc.tgtVocab.pos.decode(ids.tgt), e.tags);
    assert.ok(ids.tgt.every((t) => t >= 4), "tag ids follow the 4 specials");
  });
  // The same seed gives the same corpus.
  const again = buildNmtCorpusFromText(lines.join("\n"), {
    seed: 3,
    maxWords: 10,
    limit: 0,
    shares: { mt: 0.5, pos: 0.25, ner: 0.25 },
  }, STUB_TAGGER);
  assert.deepEqual(again.mt, corpus.mt);
});

Deno.test("data: the npm taggers give UPOS and BIO entity tags", async () => {
  const tagger = await loadEnglishTagger();
  const t = tagger.tag("Angela Merkel visited Seattle on Monday.");
  assert.deepEqual(t.tokens, ["Angela", "Merkel", "visited", "Seattle", "on", "Monday", "."]);
  assert.ok(t.pos.every((p) => UPOS.includes(p)), t.pos.join(" "));
  assert.deepEqual(t.ner.slice(0, 2), ["B-PER", "I-PER"]);
  assert.equal(t.ner[3], "B-LOC");
  assert.equal(t.ner[6], "O");
});

// ------------------------------------------------------------------ model and decoding

await setup();

Deno.test("model: teacher-forced logits per decoder, loss routes gradients to one decoder", async () => {
  const model = new Seq2Seq({
    srcVocab: 11,
    decoders: { mt: 13, pos: 7, ner: 6 },
    emb: 8,
    hidden: 6,
    encoderLayers: 2,
    decoderHidden: 5,
    decoderLayers: 1,
    dropout: 0.3,
  }, 1);
  const flat = new FlatParams(model.namedParameters(), model.paramGroups());
  const batch = makeBatch([[4, 5, 6], [7, 8], [9]], [[4, 5], [6, 4, 5, 6], [4]], { bucket: 4 });
  assert.deepEqual(batch.src.shape, [3, 4]);
  assert.deepEqual(batch.tgtIn.shape, [3, 8]);
  assert.equal(batch.tokens, 2 + 4 + 1 + 3);
  const [tgtOut] = await readMany([batch.tgtOut]);
  assert.deepEqual(Array.from(tgtOut.subarray(0, 8)), [4, 5, EOS, PAD, PAD, PAD, PAD, PAD]);
  for (const [task, v] of [["mt", 13], ["pos", 7], ["ner", 6]] as const) {
    const shape = tidy(() => [...model.logits(task, batch).shape]);
    assert.deepEqual(shape, [3, 8, v], task);
  }
  flat.zeroGrad();
  const norms = tidy(() => {
    const loss = model.loss("pos", batch);
    loss.backward();
    const norm = (g: string) => {
      const r = flat.group(g);
      return flat.grad.slice([r.start], [r.end]).square().sum().reshape([1]);
    };
    return [loss.reshape([1]), norm("encoder"), norm("decoder_mt"), norm("decoder_pos")];
  });
  const [loss, enc, mt, pos] = (await readMany(norms)).map((v) => v[0]);
  assert.ok(Number.isFinite(loss) && loss > 0);
  assert.ok(enc > 0 && pos > 0, "encoder and POS decoder get gradients");
  assert.equal(mt, 0, "the MT decoder gets none");
  for (const t of norms) t.dispose();
  // Decoding (eval mode): one row per source, at most maxLen ids, deterministic.
  model.eval();
  const greedy = await greedyDecode(model, "mt", batch, 5);
  assert.equal(greedy.length, 3);
  const valid = (r: number[]) =>
    r.length <= 5 && r.every((id) => id !== PAD && id !== EOS && id < 13);
  assert.ok(greedy.every(valid), JSON.stringify(greedy));
  assert.deepEqual(await greedyDecode(model, "mt", batch, 5), greedy);
  const beam = await beamDecode(model, "mt", batch, { beam: 3, maxLen: 5 });
  assert.equal(beam.length, 3);
  assert.ok(beam.every(valid), JSON.stringify(beam));
  disposeBatch(batch);
  flat.dispose();
});

Deno.test("batches: full batches of bucketed shapes; one pass covers an epoch", () => {
  const data = Array.from({ length: 50 }, (_, i) => ({
    src: Array.from({ length: 1 + (i % 7) }, () => 5),
    tgt: [4, 4],
  }));
  const it = new BatchIterator(data, 8, 1, 4);
  assert.equal(it.batchesPerEpoch, 6);
  const seen = new Set<number>();
  for (let b = 0; b < 6; b++) {
    const ex = it.nextExamples();
    assert.equal(ex.length, 8);
    for (const e of ex) seen.add(data.indexOf(e));
  }
  assert.equal(seen.size, 48, "48 distinct examples in the first epoch");
  assert.equal(it.epoch, 0);
  it.nextExamples();
  assert.equal(it.epoch, 1);
});

// ------------------------------------------------------------------ BLEU

Deno.test("bleu: corpus BLEU-4 with brevity penalty against a hand computation", () => {
  const hyp = [["the", "cat", "sat", "on", "the", "mat"], ["a", "b", "c", "d"]];
  const ref = [["the", "cat", "is", "on", "the", "mat"], ["a", "b", "c", "d", "e"]];
  // Matches / totals summed over both sentences:
  // 1-grams (5 + 4) / (6 + 4); 2-grams (3 + 3) / (5 + 3); 3-grams (1 + 2) / (4 + 2);
  // 4-grams (0 + 1) / (3 + 1). c = 10, r = 11: BP = exp(1 - 11/10).
  const r = corpusBleu(hyp, ref);
  assert.deepEqual(r.precisions, [9 / 10, 6 / 8, 3 / 6, 1 / 4]);
  assert.equal(r.hypLength, 10);
  assert.equal(r.refLength, 11);
  const expected = Math.exp(1 - 11 / 10) * Math.pow((9 / 10) * (6 / 8) * (3 / 6) * (1 / 4), 1 / 4);
  assert.ok(Math.abs(r.bleu - expected) < 1e-12, `${r.bleu} vs ${expected}`);
  assert.ok(Math.abs(r.bleu - 0.48767) < 1e-4);
  // Clipping: "the" counts at most as often as in the reference; no 4-gram match gives 0.
  const clipped = corpusBleu([["the", "the", "the"]], [["the", "cat"]]);
  assert.equal(clipped.precisions[0], 1 / 3);
  assert.equal(clipped.bleu, 0);
  // Identical and longer than the reference: BLEU 1, no brevity penalty.
  assert.equal(corpusBleu([["a", "b", "c", "d"]], [["a", "b", "c", "d"]]).bleu, 1);
});

Deno.test({
  name: "compare nmt --resume keeps finished methods and reruns the interrupted one",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { main } = await import("../cli.ts");
    const dir = await Deno.makeTempDir();
    const out = `${dir}/run`;
    await writeDictionary(`${dir}/de-en`);
    const log = console.log;
    const printed: string[] = [];
    console.log = (...a: unknown[]) => void printed.push(a.join(" "));
    const io = { out: (t: string) => printed.push(t), err: (t: string) => printed.push(t) };
    try {
      const sets = tinyNmtSets(
        `${dir}/de-en`,
        "train.batches=4",
        "train.valEvery=2",
        "methods.finetune=false",
        "methods.autoloss=false",
        "methods.uw=false",
        "methods.dwa=false",
      );
      assert.equal(
        await main(["compare", "nmt", "--out", out, ...sets], io),
        0,
        printed.join("\n"),
      );
      const summary = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
      const metrics = await Deno.readTextFile(`${out}/metrics.jsonl`);
      assert.deepEqual(summary.results.map((r: { method: string }) => r.method), ["mt", "fixed"]);
      // Interrupted during "fixed": the summary holds only "mt", metrics hold part of "fixed".
      const partial = { ...summary, results: summary.results.slice(0, 1) };
      await Deno.writeTextFile(`${out}/summary.json`, JSON.stringify(partial));
      const fixedLines = metrics.split("\n").filter((l) => l.includes('"method":"fixed"'));
      const cut = metrics.split("\n").filter((l) => l !== fixedLines[fixedLines.length - 1]);
      await Deno.writeTextFile(`${out}/metrics.jsonl`, cut.join("\n"));
      printed.length = 0;
      assert.equal(await main(["compare", "nmt", "--resume", out], io), 0, printed.join("\n"));
      assert.ok(
        printed.some((l) => /^MT: best val ppl .*finished before/.test(l)),
        printed.join("\n"),
      );
      const resumed = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
      assert.deepEqual(resumed.results.map((r: { method: string }) => r.method), ["mt", "fixed"]);
      assert.equal(resumed.results[1].bestPpl, summary.results[1].bestPpl, "the rerun repeats it");
      const again = (await Deno.readTextFile(`${out}/metrics.jsonl`)).split("\n");
      assert.equal(again.filter((l) => l.includes('"method":"fixed"')).length, fixedLines.length);
    } finally {
      console.log = log;
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "train nmt: Ctrl-C stops with a checkpoint; --resume (also after SIGKILL) equals the whole run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    await writeDictionary(`${dir}/de-en`);
    const sets = tinyNmtSets(
      `${dir}/de-en`,
      "train.batches=40",
      "train.valEvery=4",
      "train.checkpointEvery=8", // every second of the 10 segments
    );
    /** Runs `train nmt`; `signal` is sent once `after` validation lines were printed. */
    const train = (args: string[], stop?: { after: number; signal: Deno.Signal }) =>
      cliProcess(
        ["train", "nmt", "--backend", "cpu", ...args],
        stop && {
          when: (out) => (out.match(/autoloss epoch/g) ?? []).length >= stop.after,
          signal: stop.signal,
        },
      );
    const result = async (out: string) => {
      const summary = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
      const controller = JSON.parse(await Deno.readTextFile(`${out}/controller.json`));
      controller.provenance.date = "";
      return {
        results: summary.results.map((r: Record<string, unknown>) => ({
          ...r,
          trainSeconds: 0,
          testSeconds: 0,
        })),
        controller,
        metrics: await Deno.readTextFile(`${out}/metrics.jsonl`),
      };
    };
    try {
      const whole = await train([...sets, "--out", `${dir}/whole`]);
      assert.equal(whole.code, 0, whole.text);
      const expected = await result(`${dir}/whole`);
      assert.equal(expected.metrics.trim().split("\n").length, 11);

      const cut = await train([...sets, "--out", `${dir}/cut`], { after: 3, signal: "SIGINT" });
      assert.equal(cut.code, 130, cut.text);
      assert.match(cut.text, /stopped with a checkpoint; continue with --resume/);
      const resumed = await train(["--resume", `${dir}/cut`]);
      assert.equal(resumed.code, 0, resumed.text);
      assert.match(resumed.text, /resuming after segment [1-9]\b/); // the segment Ctrl-C ended
      assert.deepEqual(await result(`${dir}/cut`), expected);

      // SIGKILL: no last checkpoint; the metrics past the one before are rewritten.
      const kill = await train([...sets, "--out", `${dir}/kill`], { after: 4, signal: "SIGKILL" });
      assert.notEqual(kill.code, 0);
      const again = await train(["--resume", `${dir}/kill`]);
      assert.equal(again.code, 0, again.text);
      assert.match(again.text, /resuming after segment [2468]\b/);
      assert.deepEqual(await result(`${dir}/kill`), expected);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
