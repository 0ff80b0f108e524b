/**
 * autoloss: learned optimization schedules (AutoLoss, Xu et al., ICLR 2019) on a from-scratch
 * autodiff tensor library running WGSL compute shaders on Deno's WebGPU.
 *
 * Importing this module has no side effects: no GPU is acquired until `await init()`.
 *
 * ```ts
 * import { init, tensor } from "./mod.ts";
 * await init();
 * const w = tensor([[1, 2], [3, 4]]).requiresGrad_();
 * const loss = w.matmul(w).sum();
 * loss.backward();
 * console.log(await w.grad!.array());
 * ```
 * @module
 */

// Errors meant for the user (the bottom layer, util/).
export { UserError, userMessage } from "./util/errors.ts";

// Engine: backends, kernel descriptions, adapter.
export {
  type Backend,
  backend,
  type BackendChoice,
  BackendChoiceError,
  type BackendInfo,
  type BackendKind,
  type BackendStats,
  type BufferRef,
  type Gate,
  init,
  type InitOptions,
  type ProfileEntry,
  requestedBackend,
  type Storage,
  type WriteHook,
} from "./gpu/backend.ts";
export {
  type BinaryOp,
  type DType,
  E,
  type Expr,
  type KernelSpec,
  type LstmStepSpec,
  type MapInput,
  type MatmulSpec,
  type PackPart,
  type RandomKind,
  type ReduceOp,
  type UnaryOp,
  type WeightDecayMode,
} from "./gpu/kernel.ts";
export { Generator } from "./gpu/random.ts";
export {
  adapterInfo,
  type AdapterReport,
  getAdapter,
  getDevice,
  NoAdapterError,
} from "./gpu/webgpu/device.ts";
export { WebGPUBackend } from "./gpu/webgpu/backend.ts";
export type { Access } from "./gpu/webgpu/render.ts";
export { CpuBackend } from "./gpu/cpu/backend.ts";
export { SharedMemory, type Views } from "./gpu/cpu/memory.ts";

// Tensors and autodiff.
export {
  lazyMap,
  MAX_LEAVES,
  MAX_NODES,
  type Operand as MapOperand,
  runInPlace,
  setFusion,
} from "./tensor/lazy.ts";
export {
  type HostArray,
  isGradEnabled,
  keep,
  type Leaf,
  type Node,
  noGrad,
  type PendingMap,
  readMany,
  realizeReaders,
  Tensor,
  type TensorContainer,
  tidy,
} from "./tensor/tensor.ts";
export {
  accumulate_,
  argmax,
  assign_,
  binary,
  cast,
  categorical,
  concat,
  defaultGenerator,
  empty,
  expand,
  fill_,
  gatherRows,
  manualSeed,
  matmul,
  max,
  pad,
  permute,
  pick,
  reshape,
  type ScalarOp,
  scalarOp,
  scatterAddRows,
  slice,
  sum,
  unary,
  where,
} from "./tensor/ops.ts";
export {
  add,
  arange,
  bernoulli,
  clamp,
  compare,
  detach,
  div,
  full,
  leakyRelu,
  logSoftmax,
  logsumexp,
  maximum,
  mean,
  minimum,
  mul,
  type NestedArray,
  ones,
  type Operand,
  pow,
  rand,
  randn,
  softmax,
  squeeze,
  sub,
  tensor,
  transpose,
  unsqueeze,
  variance,
  zeros,
} from "./tensor/functional.ts";
export { backward, GRAD_RULES, type GradRule, unbroadcast } from "./tensor/autograd.ts";
export {
  col2im,
  conv2d,
  type Conv2dOptions,
  type ConvGeometry,
  convGeometry,
  convTranspose2d,
  type ConvTranspose2dOptions,
  convTransposeGeometry,
  im2col,
  maxPool2d,
  maxPool2dBackward,
  maxPool2dIndices,
  type Padding,
  type Size2,
} from "./tensor/conv_ops.ts";
export {
  lstmScan,
  type LstmScanOptions,
  type LstmScanViews,
  lstmScanViews,
} from "./tensor/rnn_ops.ts";

// Neural-network library.
export * from "./nn/mod.ts";

// AutoLoss core: task contract, features, controllers, REINFORCE, PPO, schedules, runner.
export * from "./rl/mod.ts";

// Tasks: regression/MLP with L1, DCGAN, multi-task translation (no CLI registration here).
export * from "./tasks/lib.ts";
