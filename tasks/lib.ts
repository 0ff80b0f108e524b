/**
 * The tasks as a library (re-exported by the root `mod.ts`): the paper's four tasks, their data
 * generators and models, and the methods that compare schedules on them. Importing this module
 * has no side effects (unlike `tasks/mod.ts`, which registers the CLI commands); npm taggers and
 * datasets are loaded on first use.
 * @module
 */

// Regression and MLP classification with L1 (paper 4.1, 5.1.1, 5.3.2).
export {
  type CreateOptions,
  type DataChoice,
  type L1Problem,
  mlpProblem,
  type MlpProblemOptions,
  regressionProblem,
  type RegressionProblemOptions,
  type TrainSettings,
} from "./l1/problems.ts";
export {
  type RegressionForm,
  RegressionTask,
  type RegressionTaskOptions,
} from "./l1/regression.ts";
export { MlpTask, type MlpTaskOptions } from "./l1/mlp.ts";
export {
  type FeatureGroup,
  type FeatureSetKind,
  L1_ACTIONS,
  type L1TaskOptions,
  type StepMode,
} from "./l1/task.ts";
export {
  autoLossMethod,
  type AutoLossOptions,
  type Curve,
  denseGridSearch,
  logSpace,
  type MethodOptions,
  type MethodResult,
  thresholdMethod,
  withoutL1,
} from "./l1/methods.ts";
export {
  type ControllerTrainOptions,
  type RemoteRoundRequest,
  type RemoteRoundResult,
  type RemoteRounds,
  type RoundLog,
  trainController,
  type TrainedController,
} from "./l1/training.ts";
export {
  CONTROLLER_CHECKPOINT_FORMAT,
  type ControllerTrainCheckpoint,
  loadControllerCheckpoint,
} from "./l1/training_checkpoint.ts";
export {
  makeRegressionData,
  noiseFloor,
  type RegressionData,
  type RegressionDataOptions,
} from "./l1/data/regression.ts";
export {
  type ClassificationData,
  type ClassificationSpec,
  makeClassification,
  makeClassificationData,
  type MakeClassificationOptions,
  makePaperClassification,
  TRANSFER_SPECS,
} from "./l1/data/classification.ts";

// DCGAN on MNIST (paper 4.2, 5.1.2, 5.3).
export { GanTask, type GanTaskOptions } from "./gan/task.ts";
export {
  AUTHORS_DCGAN,
  Dcgan,
  type DcganArch,
  DcganDiscriminator,
  DcganGenerator,
  sampleArch,
} from "./gan/model.ts";
export {
  type InceptionScore,
  inceptionScore,
  loadScoringClassifier,
} from "./classifier/inception_score.ts";
export { ganSchedule, runFixed } from "./gan/driver.ts";
export { OnlinePpo, type OnlinePpoOptions } from "./gan/online_ppo.ts";

// Multi-task translation (paper 4.3, 5.1.3).
export { Bpe, learnBpe } from "./nmt/bpe.ts";
export { Seq2Seq, type Seq2SeqSizes } from "./nmt/model.ts";
export { beamDecode, corpusBleu, greedyDecode } from "./nmt/decode.ts";
export { NMT_TASKS, NmtTask, type NmtTaskOptions } from "./nmt/task.ts";

// Types (and building blocks) referenced by the exports above.
export type {
  ColumnRoles,
  GeneratedClassification,
  PaperClassificationOptions,
} from "./l1/data/classification.ts";
export type { ClassificationSplit } from "./l1/data/classification.ts";
export type { PartitionName, RegressionSplit } from "./l1/data/regression.ts";
export { type Forward, L1ScheduleTask, type ParamSpec } from "./l1/task.ts";
export type { RuleKind } from "./l1/schedules.ts";
export type { GanFeatureSet } from "./gan/actions.ts";
export { DcganLinear, type GanActivation } from "./gan/model.ts";
export type {
  ImageSource,
  InceptionScoreOptions,
  Scorer,
  ScoringClassifier,
} from "./classifier/inception_score.ts";
export type { ImageClassifier } from "./gan/scoring.ts";
export type { ClassifierDataset } from "./classifier/data.ts";
export type { AbortReason, LoopOptions, LoopResult, LoopStats } from "./gan/driver.ts";
export type { OnlineMeta, SegmentLog } from "./gan/online_ppo.ts";
export type { BpeJson } from "./nmt/bpe.ts";
export { Decoder, Encoder, type EncoderOutput, type Seq2SeqBatch } from "./nmt/model.ts";
export { type BeamOptions, type BleuResult } from "./nmt/decode.ts";
export type { EncodedCorpus } from "./nmt/data.ts";
export type { NmtModelSizes } from "./nmt/task.ts";
export type { AccumulatorOptions } from "./classifier/inception_score.ts";
export type { GanStatus } from "./gan/status.ts";
export { type IdExample, type IdSplits, type Splits, Vocab } from "./nmt/data.ts";
export { PARTITIONS } from "./l1/data/regression.ts";
export { Rng } from "./l1/data/rng.ts";
export type { CnnArchitecture, ScoringCnn } from "./classifier/model.ts";
