/**
 * The NMT side of dist/: the methods of `compare nmt --workers`, one {@link NmtRunJob} each. The
 * corpus is built from the dictionary file (`data.path`) and the npm taggers; the learner sends
 * the file by hash (object store) and the SHA-256 of the encoded corpus it built, and a worker
 * rebuilds the corpus from the same file and refuses the job when its corpus differs (other
 * tagger or tokenizer versions give other numbers). The task is built once per corpus and kept;
 * every method resets it from the seed, as the local run does.
 * @module
 */

import type { ObjectStore } from "npm:@nats-io/obj@3.4.0";
import type { NmtConfig } from "../tasks/nmt/config.ts";
import type { EncodedCorpus } from "../tasks/nmt/data.ts";
import type { NmtTask } from "../tasks/nmt/task.ts";
import { methodContext, prepareData, taskFromConfig } from "../tasks/nmt/commands.ts";
import { type MethodResult, runMethod } from "../tasks/nmt/train.ts";
import { canonicalJson, type NmtRunJob, sha256 } from "./job.ts";
import { getArtifact, retrying } from "./nats.ts";

/** SHA-256 of an encoded corpus: its vocabularies, BPE merges and ids. */
export function corpusSha256(e: EncodedCorpus): string {
  return sha256(JSON.stringify([
    e.srcVocab.tokens,
    e.tgtVocab.mt.tokens,
    e.tgtVocab.pos.tokens,
    e.tgtVocab.ner.tokens,
    e.srcBpe.merges,
    e.tgtBpe.merges,
    e.data,
  ]));
}

let cacheDir: string | null = null;
let kept: { key: string; task: NmtTask } | null = null;

/** Runs one method of `compare nmt` (tasks/nmt/train.ts `runMethod`) as the learner would. */
export async function runNmtRunJob(
  job: NmtRunJob,
  store: ObjectStore,
  log: (l: string) => void,
): Promise<MethodResult> {
  const cfg = job.config as unknown as NmtConfig;
  const s = job.spec;
  const key = canonicalJson([cfg, s.dictionarySha256, s.corpusSha256]);
  if (kept?.key !== key) {
    kept?.task.dispose();
    kept = null;
    cacheDir ??= await Deno.makeTempDir({ prefix: "autoloss-worker-" });
    const path = `${cacheDir}/${s.dictionarySha256}.dict`;
    const sha = s.dictionarySha256;
    const bytes = await retrying("fetching the dictionary", () => getArtifact(store, sha), log);
    await Deno.writeFile(path, bytes);
    const data = await prepareData({ ...cfg, data: { ...cfg.data, path } });
    const got = corpusSha256(data.encoded);
    if (got !== s.corpusSha256) {
      throw new Error(
        `this worker's corpus (SHA-256 ${got.slice(0, 12)}) is not the learner's ` +
          `(${s.corpusSha256.slice(0, 12)}): the taggers or tokenizers differ; install the same ` +
          `versions on both`,
      );
    }
    kept = { key, task: taskFromConfig(cfg, data.encoded) };
  }
  return await runMethod(s.method, methodContext(cfg, kept.task));
}
