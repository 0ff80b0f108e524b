/**
 * The config schema of the `nmt` task; presets: configs/nmt/quick.yaml (minutes on a laptop CPU)
 * and configs/nmt/paper.yaml (the paper's sizes).
 * @module
 */

import { type ConfigOf, defineSchema } from "../../run/config.ts";
import { DING_PATH } from "./data.ts";

/** The config schema of the `nmt` task (defaults = the quick preset). */
export const NMT_SCHEMA = defineSchema({
  seed: {
    type: "integer",
    default: 1,
    doc: "seed of the data split, model init, data order, sampling",
  },
  data: {
    type: "object",
    fields: {
      path: { type: "string", default: DING_PATH, doc: "Ding dictionary (Debian trans-de-en)" },
      maxWords: {
        type: "integer",
        min: 1,
        default: 8,
        doc: "drop pairs with more words on either side",
      },
      limit: {
        type: "integer",
        default: 4000,
        doc: "use at most this many sentence pairs (0 = all)",
      },
      shares: {
        type: "object",
        fields: {
          mt: {
            type: "number",
            min: 0,
            max: 1,
            default: 0.5,
            doc: "share of the pairs used for MT",
          },
          pos: {
            type: "number",
            min: 0,
            max: 1,
            default: 0.25,
            doc: "share used (English side) for POS",
          },
          ner: {
            type: "number",
            min: 0,
            max: 1,
            default: 0.25,
            doc: "share used (English side) for NER",
          },
        },
      },
      srcMerges: { type: "integer", default: 2000, doc: "BPE merges, English (paper 10k)" },
      tgtMerges: { type: "integer", default: 2000, doc: "BPE merges, German (paper 10k)" },
      maxTokens: {
        type: "integer",
        default: 16,
        doc: "drop examples longer than this after BPE (0 = keep)",
      },
      bucket: {
        type: "integer",
        min: 1,
        default: 4,
        doc: "pad lengths to a multiple of this (fewer kernel shapes)",
      },
      auxValLimit: {
        type: "integer",
        default: 100,
        doc: "POS/NER validation examples used (0 = all)",
      },
    },
  },
  model: {
    type: "object",
    fields: {
      emb: { type: "integer", min: 1, default: 64, doc: "embedding size (paper 128)" },
      hidden: {
        type: "integer",
        min: 1,
        default: 64,
        doc: "encoder LSTM units per direction (paper 256)",
      },
      encoderLayers: { type: "integer", min: 1, default: 1, doc: "encoder layers (paper 2)" },
      decoderHidden: {
        type: "integer",
        min: 1,
        default: 64,
        doc: "decoder LSTM units (paper 256)",
      },
      decoderLayers: { type: "integer", min: 1, default: 1, doc: "decoder layers (paper 2)" },
      dropout: { type: "number", min: 0, lt: 1, default: 0.2, doc: "dropout (paper 0.3)" },
    },
  },
  train: {
    type: "object",
    fields: {
      batch: { type: "integer", min: 1, default: 32, doc: "training batch size (paper 128)" },
      lr: {
        type: "number",
        gt: 0,
        default: 0.002,
        doc: "Adam learning rate (paper 5e-4; authors' code 1e-3)",
      },
      clip: { type: "number", gt: 0, default: 1, doc: "global gradient-norm clip (paper 1)" },
      batches: {
        type: "integer",
        min: 1,
        default: 400,
        doc: "training batches per method (the budget)",
      },
      valEvery: {
        type: "integer",
        min: 1,
        default: 25,
        doc: "validate every this many batches (= PPO segment)",
      },
      evalBatch: { type: "integer", min: 1, default: 200, doc: "validation/test batch size" },
      checkpointEvery: {
        type: "integer",
        min: 1,
        default: 100,
        doc: "train nmt: checkpoint every N batches (rounded up to whole segments)",
      },
    },
  },
  methods: {
    type: "object",
    fields: {
      mt: { type: "boolean", default: true, doc: "MT only" },
      fixed: { type: "boolean", default: true, doc: "FIXED RATIO (proportional to data sizes)" },
      finetune: { type: "boolean", default: true, doc: "FIXED RATIO, then fine-tune on MT" },
      autoloss: { type: "boolean", default: true, doc: "AutoLoss (online PPO controller)" },
      uw: { type: "boolean", default: true, doc: "uncertainty weighting (beyond the paper)" },
      dwa: { type: "boolean", default: true, doc: "dynamic weight average (beyond the paper)" },
      finetuneAt: {
        type: "number",
        min: 0,
        max: 1,
        default: 0.5,
        doc: "fraction of the budget before MT-only fine-tuning",
      },
      dwaTemperature: { type: "number", gt: 0, default: 2, doc: "DWA softmax temperature" },
    },
  },
  ppo: {
    type: "object",
    fields: {
      lr: {
        type: "number",
        gt: 0,
        default: 0.001,
        doc: "controller Adam learning rate (paper 1e-3)",
      },
      gamma: { type: "number", min: 0, max: 1, default: 0.95, doc: "discount (paper 0.95)" },
      gaeLambda: { type: "number", min: 0, max: 1, default: 0.95, doc: "GAE lambda" },
      hidden: { type: "integer", min: 1, default: 32, doc: "actor/critic hidden units (paper 32)" },
      epochs: { type: "integer", default: 4, doc: "PPO epochs per segment" },
      minibatches: { type: "integer", min: 1, default: 1, doc: "minibatches per epoch" },
      entCoef: { type: "number", min: 0, default: 0.01, doc: "entropy bonus" },
      clip: { type: "number", gt: 0, default: 0.2, doc: "surrogate clip epsilon" },
      rewardC: { type: "number", gt: 0, default: 1, doc: "C of the normalized-improvement reward" },
      rewardK: {
        type: "integer",
        min: 1,
        default: 3,
        doc: "k of the normalized-improvement reward",
      },
    },
  },
  decode: {
    type: "object",
    fields: {
      beam: { type: "integer", min: 1, default: 5, doc: "beam width (authors 5)" },
      maxLenRatio: {
        type: "number",
        gt: 0,
        default: 1.5,
        doc: "max output length / source length",
      },
      maxLenExtra: { type: "integer", default: 3, doc: "plus this many tokens" },
      batch: { type: "integer", min: 1, default: 100, doc: "sentences decoded together" },
    },
  },
});

/** A resolved `nmt` config. */
export type NmtConfig = ConfigOf<typeof NMT_SCHEMA>;
