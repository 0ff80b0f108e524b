#!/usr/bin/python3
"""PyTorch CPU as the speed peer of autoloss: our benchmark workloads, at the same shapes and
update rules, timed with 1 and with 2 CPU threads.

Run (Debian's python, which has torch 1.13, numpy and OpenBLAS here):

    /usr/bin/python3 bench/torch_peer.py [--only NAME[,NAME]] [--iters N] [--threads 1,2]
        [--openblas-coretype NAME] > torch_peer.json

Elsewhere: `apt-get install python3-torch python3-numpy libopenblas0-pthread`; without torch the
script prints that command and exits 2. A human-readable table goes to stderr, ONE JSON object to
stdout: {"torch", "threads_available", "cpu", "blas", "openblas_core", "omp_wait_policy",
"loadavg", "workloads":
{name: {"ms_1t", "ms_2t", "ms_min_1t", "ms_min_2t", "gflops_1t", "gflops_2t", "gflop", "shape",
"mirrors", ...}}} (the `_1t`/`_2t` suffixes follow `--threads`). See bench/torch_peer.md.

Timing: per workload, one fresh instance per thread count (each from torch.manual_seed(1)) runs
`warmup` untimed iterations; then the `iters` timed iterations ALTERNATE between the thread
counts (1t, 2t, 1t, 2t, ...) so that drifting machine load biases neither, each preceded by one
untimed step at its thread count (after the other count's turn, OpenBLAS's and OpenMP's idle
workers have gone to sleep, and the first step pays for waking them: ~10 ms on a 1024 matmul).
Each timed iteration repeats the step R times (R chosen after warmup so that an iteration lasts
>= 30 ms; R = 1 for everything but the small matmuls, the MLP and the regression step) and
records the mean per step; the report is the median over iterations, and the fastest
(`ms_min_*`). Multi-phase workloads (a GAN D step then a G step) time each phase separately
within the same iterations. ms are wall-clock `time.perf_counter` (torch CPU is synchronous).
Threads: `torch.set_num_threads(n)` AND `openblas_set_num_threads(n)` (ctypes, on the loaded
OpenBLAS: torch 1.13 does not forward its thread count to OpenBLAS, whose pthread build
otherwise always uses every core), with OMP_WAIT_POLICY=PASSIVE unless set (spinning OpenMP
workers starve OpenBLAS's threads on 2 cores: up to 15x slower small steps). GFLOP/s count the
multiply-adds (x2) of the matmuls and convolutions only (forward, and in backward only the
weight and input gradients that are really computed), so they are comparable with
bench/conv.bench.ts's MFLOP labels.

OpenBLAS: Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not know every recent CPU; on the
development machine it falls back to its "Prescott" (SSE3) kernels, 4-7x slower on matmul than
its AVX-512 ("SkylakeX") ones. The JSON records the core it picked (`openblas_core`);
`--openblas-coretype SkylakeX` (or Haswell) sets OPENBLAS_CORETYPE before torch loads, for a
tuned peer. Forward/backward conv2d goes through oneDNN (mkldnn, its own AVX-512 kernels either
way); torch 1.13's conv_transpose2d (`slow_conv_transpose2d`, im2col + GEMM), every linear layer
and the LSTMs go through OpenBLAS.

Workloads, and what of ours each mirrors (values never matter for timing; shapes, dtypes (all
fp32), padding, batch sizes, layer counts and which parameters get gradients do):

- `matmul_256`, `matmul_512`, `matmul_1024`: bench/report.ts WORKLOADS "matmul S" and
  bench/autoloss_impl.ts `matmul` (randn [S, S] @ randn [S, S], a new output per op).
- `gan_quick` -> `gan_quick_d_step`, `gan_quick_g_step`, `gan_quick_step` (their mean): one step
  of `train gan`'s quick preset (configs/gan/quick.yaml: G32 D32 z64, batch 32, Adam lr 5e-4,
  betas (0.5, 0.999), eps 1e-8), i.e. tasks/gan/task.ts `GanTask.step` with a host action, the D and G
  steps alternating (a 1:1 schedule). Model: tasks/gan/model.ts `Dcgan` (G: linear z -> 7x7x64,
  ReLU, deconv 5x5/2 -> 14x14x32, ReLU, deconv 5x5/2 -> 28x28x1, tanh; D: conv 5x5/2 -> 14x14x32,
  leaky 0.2, conv 5x5/2 -> 7x7x64, leaky 0.2, linear -> 1; N(0, 0.02) weights, zero biases,
  TF "same" padding, no batch norm). D step = `#dBranch`: a real batch gathered from a host
  dataset (`BatchIterator`: here index_select from a [10000, 1, 28, 28] tensor), G(z) under
  no_grad, ONE D forward of [real; fake] (2B rows, as our no-batch-norm path), the two BCE-with-
  logits halves, l_D = mean, zero grads, backward, D's normalized grad norm, Adam on D, then the
  metrics vector (gen_cost, d_real, d_fake, the two accuracies) and `#record`'s EMA/lazy-history/
  flag updates. G step = `#gBranch`: D's parameters set to requires_grad False (no D weight
  gradients), l_G = BCE(D(G(z)), 1), backward, G's normalized grad norm, Adam on G, then the
  metrics with one more no-grad D forward on the real batch, and `#record`. Not mirrored: the
  controller (PPO features/sampling), the driver's per-step status read, IS evaluation.
  Difference: one torch Adam per group instead of our one Adam with a shared step counter (same
  arithmetic per updated parameter).
- `dcgan_authors_step`: bench/conv.bench.ts `oursDcgan` ("dcgan D+G step batch 64"), the authors'
  network (tasks/gan/model.ts AUTHORS_DCGAN shape: z 128, 64 filters, dense 7x7x128 with weight
  [in, out] and `x @ W + b` as that bench's `Dense`): one D step (zero grads; fake = G(randn) under
  no_grad; bce(D(real), 1) + bce(D(fake), 0) with TWO D forwards; backward; Adam on D) plus one G
  step (zero grads; bce(D(G(randn)), 1); backward, which also computes D's weight gradients since
  that bench leaves them enabled; Adam on G). Adam lr 2e-4, betas (0.5, 0.999); `real` is a fixed
  U(-1, 1) batch. Reported as the D+G sum (phases in `phases`).
- `mlp_step`: bench/mlp_step.ts `mlpWorkload` with bench/report.ts's MLP params (the "MLP
  100-64-1 Adam step" of the issue): batch 128, Linear(100, 64), ReLU, Linear(64, 1), MSE against
  randn targets, zero grads, backward, Adam lr 1e-3. (Not the population classifier of
  tasks/l1/mlp.ts, 32-32-2.)
- `regression_step`: one step of the population-batched quadratic regression as bench/dgs.ts runs
  it (its default: 50 DGS lambdas = population 50, joint mode, `data: "task"`, lr 5e-4, d = 16,
  200 training / 200 validation / 200 test rows, authors' form, authors' features): tasks/l1/task.ts
  `L1ScheduleTask.step` (grad += lambda * sign(theta); Adam over W [50, 272]) followed by its
  `#observe` (zero grads; train MSE per member from W @ phi_train [272, 200]; backward of the sum;
  validation MSE from W @ phi_val, or every 10th step W @ [phi_val | phi_test] plus the best-
  validation tracking; L1 value, normalized task and L1 grad norms, the improvement EMA, the 5
  authors' features). Not mirrored: rl/runner.ts's per-step controller sampling (a fixed "task
  only" schedule there).
- `nmt_step`: bench/nmt_step.ts `autolossStep` at its defaults (the paper sizes): batch 32,
  source and target length 20, vocabularies 5000, tasks/nmt/model.ts `Seq2Seq` with one "mt"
  decoder, emb 128, hidden 256, 2-layer bidirectional LSTM encoder, 2-layer LSTM decoder whose
  initial state is tanh(Linear(512 -> 256)) of the encoder layer's final [fw; bw] h and c, Luong
  "general" attention (score q W m^T with W [256, 512], additive source mask, softmax, context,
  attentional state tanh([context; q] W_c^T), W_c [256, 768] without bias), output Linear(256 ->
  5000) on [B*T, 256] rows, token cross-entropy ignoring padding id 0, dropout 0, zero grads,
  backward, global-norm clip 1, Adam lr 1e-3. Differences: torch's nn.LSTM (one fused CPU kernel
  path with weight_ih/weight_hh and two biases; ours is one fused [4H, F + H] weight and one bias,
  with the same per-layer input projection for all time steps); embeddings use dense gradients in
  both.
"""

import argparse
import ctypes
import json
import math
import os
import statistics
import sys
import time

INSTALL_COMMAND = "apt-get install python3-torch python3-numpy libopenblas0-pthread"

GROUPS = ["matmul", "gan_quick", "dcgan", "mlp", "regression", "nmt"]


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="PyTorch CPU peer of the autoloss benchmarks (see the module docstring).")
    ap.add_argument("--only", default="",
                    help="comma-separated workload or group names (prefixes work): "
                    + ", ".join(GROUPS))
    ap.add_argument("--iters", type=int, default=0,
                    help="timed iterations for every workload (default: per workload, 5-20)")
    ap.add_argument("--warmup", type=int, default=-1,
                    help="untimed iterations (default: per workload, 1-3)")
    ap.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    ap.add_argument("--openblas-coretype", default="",
                    help="set OPENBLAS_CORETYPE (e.g. SkylakeX, Haswell) before torch loads")
    return ap.parse_args(argv)


ARGS = parse_args(sys.argv[1:])
if ARGS.openblas_coretype:
    os.environ["OPENBLAS_CORETYPE"] = ARGS.openblas_coretype  # read when OpenBLAS loads
# Sleeping (not spinning) OpenMP workers: with 2 threads, torch's spinning OpenMP workers and
# OpenBLAS's own 2 pthreads fight over the 2 cores (a 0.4 ms MLP step took 7 ms). Read when
# libgomp starts, so it must be set before torch loads; an explicit setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print(INSTALL_COMMAND, file=sys.stderr)
    sys.exit(2)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- threads and machine


def _openblas():
    """The loaded OpenBLAS (ctypes handle), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = [line.split()[-1] for line in f if "openblas" in line.split()[-1]]
    except OSError:
        return None
    for p in paths:
        try:
            lib = ctypes.CDLL(p)
            lib.openblas_set_num_threads  # noqa: B018 (raises if absent)
            return lib
        except (OSError, AttributeError):
            continue
    return None


torch.zeros(2, 2) @ torch.zeros(2, 2)  # make sure the BLAS library is loaded
OPENBLAS = _openblas()


def set_threads(n):
    torch.set_num_threads(n)
    if OPENBLAS is not None:
        OPENBLAS.openblas_set_num_threads(n)


def openblas_info():
    if OPENBLAS is None:
        return None, None
    try:
        OPENBLAS.openblas_get_config.restype = ctypes.c_char_p
        OPENBLAS.openblas_get_corename.restype = ctypes.c_char_p
        return (OPENBLAS.openblas_get_config().decode(),
                OPENBLAS.openblas_get_corename().decode())
    except AttributeError:
        return None, None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "?"


def blas_summary():
    show = torch.__config__.show()
    info = "?"
    for part in show.replace("\n", ",").split(","):
        if "BLAS_INFO=" in part:
            info = part[part.index("BLAS_INFO="):].strip()
            break
    cfg, core = openblas_info()
    return (f"{info}; loaded: {cfg}" if cfg else info), core


# ---------------------------------------------------------------- timing


def prepare(phases, warmup, min_ms=30.0, max_reps=200):
    """Runs `warmup` untimed iterations of every phase plus one more to choose R (steps per
    timed iteration, so that an iteration lasts >= min_ms). Returns R."""
    for _ in range(max(warmup, 0)):
        for _, fn in phases:
            fn()
    t0 = time.perf_counter()
    for _, fn in phases:
        fn()
    one = (time.perf_counter() - t0) * 1e3
    return max(1, min(max_reps, math.ceil(min_ms / max(one, 1e-3))))


def one_iteration(phases, reps):
    """One timed iteration: every phase in order, R times; returns {phase: ms per step}."""
    acc = {name: 0.0 for name, _ in phases}
    for _ in range(reps):
        for name, fn in phases:
            t = time.perf_counter()
            fn()
            acc[name] += time.perf_counter() - t
    return {name: v / reps * 1e3 for name, v in acc.items()}


# ---------------------------------------------------------------- shared pieces


def tf_same_pad(size, k, s):
    """TensorFlow 'same' padding (before, after) of a conv over `size` (the odd extra at the
    end), as tensor/conv_ops.ts convGeometry."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv_same(x, w, b, stride=2):
    """F.conv2d with TF 'same' padding (asymmetric: 1 before, 2 after for 5x5/2 on even sizes;
    torch's padding='same' refuses stride > 1)."""
    k = w.shape[-1]
    pt, pb = tf_same_pad(x.shape[2], k, stride)
    pl, pr = tf_same_pad(x.shape[3], k, stride)
    if pt == pb and pl == pr:
        return F.conv2d(x, w, b, stride=stride, padding=(pt, pl))
    return F.conv2d(F.pad(x, (pl, pr, pt, pb)), w, b, stride=stride)


def deconv_same(x, w, b, stride=2):
    """F.conv_transpose2d with TF 'same' semantics: output `in * stride`, cropping
    floor(extra / 2) at the top/left of the full output (tensor/conv_ops.ts
    convTransposeGeometry). Torch crops `padding` on both sides, so crop the smaller amount
    there and slice the rest off the bottom/right."""
    k = w.shape[-1]
    h, wd = x.shape[2], x.shape[3]
    oh, ow = h * stride, wd * stride
    ct = max((h - 1) * stride + k - oh, 0) // 2
    cl = max((wd - 1) * stride + k - ow, 0) // 2
    y = F.conv_transpose2d(x, w, b, stride=stride, padding=(ct, cl))
    if y.shape[2] != oh or y.shape[3] != ow:
        y = y[:, :, :oh, :ow]
    return y


def conv_flops(cin, cout, k, out_hw):
    """Multiply-add FLOPs (x2) per sample of a conv whose small side has `out_hw` pixels."""
    return 2 * cin * cout * k * k * out_hw


def grad_norm(params):
    """Global L2 norm of the gradients (nn/optim.ts gradNorm over a group)."""
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]))


def normal_(t, std=0.02):
    with torch.no_grad():
        t.normal_(0.0, std)
    return t


# ---------------------------------------------------------------- 1. matmul


def make_matmul(s):
    a = torch.randn(s, s)
    b = torch.randn(s, s)
    box = [None]

    def step():
        box[0] = a @ b

    return {"phases": [("matmul", step)], "gflop": {"matmul": 2 * s ** 3 / 1e9},
            "shape": f"[{s},{s}] @ [{s},{s}] fp32"}


# ---------------------------------------------------------------- 2./3. DCGAN


class Dcgan(nn.Module):
    """tasks/gan/model.ts Dcgan without batch norm (gActivation relu, dActivation leaky 0.2).
    `dense_in_out`: the fully connected layers as conv.bench.ts's `Dense` (weight [in, out],
    x @ W + b) instead of tasks/gan/model.ts DcganLinear (weight [out, in], linear)."""

    def __init__(self, z, g, d, dense_in_out=False):
        super().__init__()
        self.z, self.g, self.d, self.dense_in_out = z, g, d, dense_in_out

        def dense(i, o):
            w = nn.Parameter(normal_(torch.empty((i, o) if dense_in_out else (o, i))))
            return w, nn.Parameter(torch.zeros(o))

        # G
        self.g_fc_w, self.g_fc_b = dense(z, 7 * 7 * 2 * g)
        self.g_up1_w = nn.Parameter(normal_(torch.empty(2 * g, g, 5, 5)))  # [Cin, Cout, k, k]
        self.g_up1_b = nn.Parameter(torch.zeros(g))
        self.g_up2_w = nn.Parameter(normal_(torch.empty(g, 1, 5, 5)))
        self.g_up2_b = nn.Parameter(torch.zeros(1))
        # D
        self.d_c1_w = nn.Parameter(normal_(torch.empty(d, 1, 5, 5)))  # [Cout, Cin, k, k]
        self.d_c1_b = nn.Parameter(torch.zeros(d))
        self.d_c2_w = nn.Parameter(normal_(torch.empty(2 * d, d, 5, 5)))
        self.d_c2_b = nn.Parameter(torch.zeros(2 * d))
        self.d_fc_w, self.d_fc_b = dense(7 * 7 * 2 * d, 1)

    def _dense(self, x, w, b):
        return x @ w + b if self.dense_in_out else F.linear(x, w, b)

    def gen_params(self):
        return [self.g_fc_w, self.g_fc_b, self.g_up1_w, self.g_up1_b, self.g_up2_w, self.g_up2_b]

    def disc_params(self):
        return [self.d_c1_w, self.d_c1_b, self.d_c2_w, self.d_c2_b, self.d_fc_w, self.d_fc_b]

    def generate(self, z):
        h = self._dense(z, self.g_fc_w, self.g_fc_b).reshape(z.shape[0], 2 * self.g, 7, 7)
        h = deconv_same(F.relu(h), self.g_up1_w, self.g_up1_b)
        return torch.tanh(deconv_same(F.relu(h), self.g_up2_w, self.g_up2_b))

    def discriminate(self, x):
        h = F.leaky_relu(conv_same(x, self.d_c1_w, self.d_c1_b), 0.2)
        h = F.leaky_relu(conv_same(h, self.d_c2_w, self.d_c2_b), 0.2)
        return self._dense(h.reshape(x.shape[0], 7 * 7 * 2 * self.d), self.d_fc_w, self.d_fc_b)

    def flops(self):
        """Per-sample forward FLOPs by layer: {'G': [fc, up1, up2], 'D': [c1, c2, fc]}."""
        g, d, z = self.g, self.d, self.z
        return {
            "G": [2 * z * 7 * 7 * 2 * g, conv_flops(2 * g, g, 5, 49), conv_flops(g, 1, 5, 196)],
            "D": [conv_flops(1, d, 5, 196), conv_flops(d, 2 * d, 5, 49), 2 * 7 * 7 * 2 * d],
        }


def bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, target)


def make_gan_quick(batch=32, z=64, g=32, d=32, lr=5e-4, betas=(0.5, 0.999), dataset=10000):
    model = Dcgan(z, g, d)
    gp, dp = model.gen_params(), model.disc_params()
    n_g = sum(p.numel() for p in gp)
    n_d = sum(p.numel() for p in dp)
    opt_g = torch.optim.Adam(gp, lr=lr, betas=betas, eps=1e-8)
    opt_d = torch.optim.Adam(dp, lr=lr, betas=betas, eps=1e-8)
    data = torch.rand(dataset, 1, 28, 28) * 2 - 1  # the host dataset in [-1, 1]
    ones = torch.ones(batch, 1)
    zeros = torch.zeros(batch, 1)
    st = {"perm": torch.randperm(dataset), "pos": 0, "t": 0,
          "losses": torch.zeros(5), "ema": torch.zeros(3), "grads": torch.zeros(2),
          "lazy": torch.zeros(2), "flags": torch.tensor([0.0, -1.0, 0.0, 0.0])}

    def real_batch():  # BatchIterator.next(): the next shuffled indices, gathered
        if st["pos"] + batch > dataset:
            st["perm"], st["pos"] = torch.randperm(dataset), 0
        idx = st["perm"][st["pos"]:st["pos"] + batch]
        st["pos"] += batch
        return data.index_select(0, idx)

    def zero_grad():  # FlatParams.zeroGrad (all of G and D)
        for p in model.parameters():
            p.grad = None

    def record(action, m, loss, grad):  # GanTask #record, on tiny tensors
        beta = 0.9
        with torch.no_grad():
            part = m[:3]
            st["losses"] = m.clone()
            st["ema"] = part.clone() if st["t"] == 0 else st["ema"] * beta + part * (1 - beta)
            is_d = torch.full((1,), float(action))
            is_g = 1 - is_d
            mask = torch.cat([is_g, is_d]).bool()
            st["grads"] = torch.where(mask, grad.reshape(1).expand(2), st["grads"])
            st["lazy"] = torch.where(mask, loss.reshape(1).expand(2), st["lazy"])
            f = st["flags"]
            same = (is_d == f[1:2]).float()
            checked = (m.sum() + grad.sum()).reshape(1)
            bad = (torch.isnan(checked) | torch.isinf(checked)).float()
            st["flags"] = torch.cat([f[0:1] * same + 1, is_d, f[2:3] + is_g, f[3:4] + bad])
        st["t"] += 1

    def acc(logits, real):
        return ((logits > 0) if real else (logits < 0)).float().mean().reshape(1)

    def d_step():  # GanTask #dBranch (no batch norm: one D forward over [real; fake])
        real = real_batch()
        with torch.no_grad():
            fake = model.generate(torch.randn(batch, z))
        both = model.discriminate(torch.cat([real, fake], 0))
        lr_, lf = both[:batch], both[batch:]
        d_real = bce(lr_, ones)
        d_fake = bce(lf, zeros)
        loss = (d_real + d_fake) * 0.5
        zero_grad()
        loss.backward()
        grad = grad_norm(dp) * (1 / math.sqrt(n_d))
        opt_d.step()
        with torch.no_grad():
            m = torch.cat([bce(lf, ones).reshape(1), d_real.reshape(1), d_fake.reshape(1),
                           acc(lr_, True), acc(lf, False)])
        record(1, m, loss.detach(), grad.detach())

    def g_step():  # GanTask #gBranch (D's weight gradients not computed)
        real = real_batch()
        zero_grad()
        for p in dp:
            p.requires_grad_(False)
        try:
            lf = model.discriminate(model.generate(torch.randn(batch, z)))
            loss = bce(lf, ones)
            loss.backward()
        finally:
            for p in dp:
                p.requires_grad_(True)
        grad = grad_norm(gp) * (1 / math.sqrt(n_g))
        opt_g.step()
        with torch.no_grad():
            lr_ = model.discriminate(real)
            fake = lf.detach()
            m = torch.cat([loss.detach().reshape(1), bce(lr_, ones).reshape(1),
                           bce(fake, zeros).reshape(1), acc(lr_, True), acc(fake, False)])
        record(0, m, loss.detach(), grad.detach())

    fl = model.flops()
    gf, df = sum(fl["G"]), sum(fl["D"])
    d_wgrad = df
    d_igrad_no_first = df - fl["D"][0]
    g_igrad_no_first = gf - fl["G"][0]
    # D step: G fwd (B), D fwd (2B), D weight grads + input grads but conv1's (2B).
    d_flops = batch * gf + 2 * batch * (df + d_wgrad + d_igrad_no_first)
    # G step: G and D fwd (B), D input grads (all), G weight grads, G input grads but fc's;
    # then the metrics' D fwd on the real batch (B).
    g_flops = batch * (gf + df + df + gf + g_igrad_no_first) + batch * df
    return {
        "phases": [("d", d_step), ("g", g_step)],
        "gflop": {"d": d_flops / 1e9, "g": g_flops / 1e9},
        "shape": f"DCGAN G{g} D{d} z{z}, batch {batch}, Adam lr {lr} betas {betas}",
    }


def make_dcgan_authors(batch=64, z=128, g=64, d=64, lr=2e-4, betas=(0.5, 0.999)):
    model = Dcgan(z, g, d, dense_in_out=True)
    gp, dp = model.gen_params(), model.disc_params()
    opt_g = torch.optim.Adam(gp, lr=lr, betas=betas)
    opt_d = torch.optim.Adam(dp, lr=lr, betas=betas)
    real = torch.rand(batch, 1, 28, 28) * 2 - 1
    ones = torch.ones(batch, 1)
    zeros = torch.zeros(batch, 1)

    def zero_grad():
        for p in model.parameters():
            p.grad = None

    def d_step():
        zero_grad()
        with torch.no_grad():
            fake = model.generate(torch.randn(batch, z))
        loss = bce(model.discriminate(real), ones) + bce(model.discriminate(fake), zeros)
        loss.backward()
        opt_d.step()

    def g_step():
        zero_grad()
        loss = bce(model.discriminate(model.generate(torch.randn(batch, z))), ones)
        loss.backward()  # D's weight gradients too (requires_grad stays on, as conv.bench.ts)
        opt_g.step()

    fl = model.flops()
    gf, df = sum(fl["G"]), sum(fl["D"])
    d_flops = batch * gf + 2 * batch * (df + df + (df - fl["D"][0]))
    g_flops = batch * (gf + df + df + df + gf + (gf - fl["G"][0]))
    return {
        "phases": [("d", d_step), ("g", g_step)],
        "gflop": {"d": d_flops / 1e9, "g": g_flops / 1e9},
        "shape": f"authors' DCGAN G{g} D{d} z{z} (dense [in,out]), batch {batch}, "
                 f"Adam lr {lr} betas {betas}; D step + G step",
    }


# ---------------------------------------------------------------- 4. MLP


def make_mlp(batch=128, in_dim=100, hidden=64, out_dim=1, lr=1e-3):
    model = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x = torch.randn(batch, in_dim)
    y = torch.randn(batch, out_dim)

    def step():
        opt.zero_grad(set_to_none=True)
        F.mse_loss(model(x), y).backward()
        opt.step()

    fwd = 2 * batch * (in_dim * hidden + hidden * out_dim)
    flops = fwd + fwd + 2 * batch * hidden * out_dim  # fwd, weight grads, layer 2 input grad
    return {"phases": [("step", step)], "gflop": {"step": flops / 1e9},
            "shape": f"batch {batch}, {in_dim}-{hidden}(ReLU)-{out_dim}, MSE, Adam lr {lr}"}


# ---------------------------------------------------------------- 5. regression population


def make_regression(pop=50, d=16, n_train=200, n_val=200, n_test=200, lr=5e-4, val_every=10,
                    decay=0.8):
    f_dim = d + d * d
    lam = torch.tensor([math.exp(math.log(0.01) + (math.log(3.2) - math.log(0.01)) * i /
                                 (pop - 1)) for i in range(pop)])

    def split(n):
        x = torch.randn(n, d)
        phi = torch.cat([x, (x[:, :, None] * x[:, None, :]).reshape(n, d * d) * 0.1], 1)
        return phi.t().contiguous(), torch.randn(n) * 2  # phi^T [F, n], y [n]

    phi_tr, y_tr = split(n_train)
    phi_val, y_val = split(n_val)
    phi_te, y_te = split(n_test)
    phi_eval = torch.cat([phi_val, phi_te], 1).contiguous()
    y_eval = torch.cat([y_val, y_te])
    w = torch.empty(pop, f_dim)
    with torch.no_grad():
        w[:, :d].normal_(0, 0.1)
        w[:, d:].normal_(0, 0.01)
    w.requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    lam_elem = lam[:, None].expand(pop, f_dim)
    inv_sqrt_n = 1 / math.sqrt(f_dim)
    big = 1e30
    st = {"t": 0, "best": torch.full((pop,), big), "test_at_best": torch.zeros(pop),
          "best_step": torch.zeros(pop), "since": torch.zeros(pop), "done": torch.zeros(pop),
          "l1count": torch.zeros(pop), "steps": torch.zeros(1), "prev": None, "ema": None}

    def observe():  # L1ScheduleTask #observe (authors' features, featureValEvery 1)
        validate = st["t"] % val_every == 0
        w.grad = None
        train_loss = (w @ phi_tr - y_tr).square().mean(1)
        with torch.no_grad():
            if validate:
                sq = (w @ phi_eval - y_eval).square()
                val_loss = sq[:, :n_val].mean(1)
                test = sq[:, n_val:].mean(1)
            else:
                val_loss = (w @ phi_val - y_val).square().mean(1)
        train_loss.sum().backward()
        with torch.no_grad():
            tl = train_loss.detach()
            l1 = w.abs().sum(1) * lam
            grad_task = w.grad.square().sum(1).sqrt() * inv_sqrt_n
            grad_l1 = w.sign().abs().sum(1).sqrt() * lam * inv_sqrt_n
            # ImprovementEma.observe
            delta = st["prev"] - val_loss if st["prev"] is not None else torch.full((pop,), 0.1)
            base = st["ema"] if st["ema"] is not None else delta
            st["ema"] = base * decay + delta * (1 - decay)
            st["prev"] = val_loss.clone()
            if validate:  # #track
                alive = 1 - st["done"]
                improved = (val_loss < st["best"]).float() * alive
                imp = improved.bool()
                st["best"] = torch.where(imp, val_loss, st["best"])
                st["test_at_best"] = torch.where(imp, test, st["test_at_best"])
                st["best_step"] = torch.where(imp, st["steps"].expand(pop), st["best_step"])
                st["since"] = torch.where(imp, torch.zeros(1), st["since"] + alive)
            # featureSet("authors-regression").compute
            ok = tl > 1e-6
            gap = torch.where(ok, (val_loss - tl) / torch.where(ok, tl, torch.ones(1)),
                              torch.zeros(1))
            st["features"] = torch.stack([
                gap,
                (st["ema"].abs() + 1e-5).log() * (1 / 12) + 1,
                (tl * (1 / 20)).clamp(max=1) - 0.5,
                l1 - 1,
                grad_task - grad_l1,
            ], 1)

    def step():  # L1ScheduleTask.step in joint mode, then #observe
        with torch.no_grad():
            af = torch.zeros(pop)
            w.grad.add_(w.sign() * lam_elem)
            st["l1count"] = st["l1count"] + af
        opt.step()
        st["t"] += 1
        st["steps"] = st["steps"] + 1
        observe()

    observe()  # reset() ends with one observation
    mm = 2 * pop * f_dim
    flops = mm * n_train * 2 + mm * (n_val * (val_every - 1) + (n_val + n_test)) / val_every
    return {"phases": [("step", step)], "gflop": {"step": flops / 1e9},
            "shape": f"population {pop}, d {d} (F {f_dim}), train/val/test "
                     f"{n_train}/{n_val}/{n_test}, joint L1, Adam lr {lr}"}


# ---------------------------------------------------------------- 6. NMT


def lcg_ids(n, vocab, seed):
    """bench/nmt_step.ts ids(): deterministic token ids in [4, vocab)."""
    a = seed & 0xFFFFFFFF
    out = []
    for _ in range(n):
        a = (a * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(4 + a % (vocab - 4))
    return out


class Seq2Seq(nn.Module):
    """tasks/nmt/model.ts Seq2Seq with one decoder, dropout 0."""

    def __init__(self, vocab, emb, hidden, layers):
        super().__init__()
        self.h, self.layers = hidden, layers
        self.src_emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.enc = nn.LSTM(emb, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.tgt_emb = nn.Embedding(vocab, emb, padding_idx=0)
        self.bridge_h = nn.Linear(2 * hidden, hidden)
        self.bridge_c = nn.Linear(2 * hidden, hidden)
        self.dec = nn.LSTM(emb, hidden, num_layers=layers, batch_first=True)
        k = 1 / math.sqrt(2 * hidden)
        self.att_w = nn.Parameter(torch.empty(hidden, 2 * hidden).uniform_(-k, k))
        k = 1 / math.sqrt(3 * hidden)
        self.att_combine = nn.Parameter(torch.empty(hidden, 3 * hidden).uniform_(-k, k))
        self.out = nn.Linear(hidden, vocab)
        with torch.no_grad():
            self.src_emb.weight.mul_(0.1)
            self.tgt_emb.weight.mul_(0.1)

    def loss(self, src, tgt_in, tgt_out, mask):
        b, ts = src.shape
        h = self.h
        memory, (hn, cn) = self.enc(self.src_emb(src))  # [B, Ts, 2H], [L*2, B, H]

        def per_layer(s):  # Decoder.initialState: [L, 2, B, H] -> [L, B, 2H]
            return s.reshape(self.layers, 2, b, h).permute(0, 2, 1, 3).reshape(
                self.layers, b, 2 * h)

        h0 = torch.tanh(self.bridge_h(per_layer(hn)))
        c0 = torch.tanh(self.bridge_c(per_layer(cn)))
        q, _ = self.dec(self.tgt_emb(tgt_in), (h0.contiguous(), c0.contiguous()))  # [B, Tt, H]
        scores = torch.matmul(torch.matmul(q, self.att_w), memory.transpose(1, 2)) + mask
        weights = torch.softmax(scores, -1)
        context = torch.matmul(weights, memory)
        att = torch.tanh(torch.matmul(torch.cat([context, q], 2), self.att_combine.t()))
        tt = att.shape[1]
        logits = self.out(att.reshape(b * tt, h))
        return F.cross_entropy(logits, tgt_out.reshape(b * tt), ignore_index=0)


def make_nmt(batch=32, length=20, vocab=5000, emb=128, hidden=256, layers=2, lr=1e-3):
    model = Seq2Seq(vocab, emb, hidden, layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    src = torch.tensor([lcg_ids(length, vocab, r + 1) for r in range(batch)])
    rows = [lcg_ids(length - 1, vocab, r + 1001) for r in range(batch)]
    tgt_in = torch.tensor([[2] + r for r in rows])
    tgt_out = torch.tensor([r + [3] for r in rows])
    mask = torch.zeros(batch, 1, length)  # sourceMask: all lengths full

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model.loss(src, tgt_in, tgt_out, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    b, t, h, e, v = batch, length, hidden, emb, vocab
    lstm = 0
    for k in range(layers):  # encoder: both directions
        lstm += 2 * (2 * b * t * (e if k == 0 else 2 * h) * 4 * h + 2 * b * t * h * 4 * h)
    for k in range(layers):
        lstm += 2 * b * t * (e if k == 0 else h) * 4 * h + 2 * b * t * h * 4 * h
    bridges = 2 * (2 * layers * b * 2 * h * h)
    att = 2 * b * t * h * 2 * h + 2 * (2 * b * t * t * 2 * h) + 2 * b * t * 3 * h * h
    out = 2 * b * t * h * v
    fwd = lstm + bridges + att + out
    return {"phases": [("step", step)], "gflop": {"step": 3 * fwd / 1e9},
            "shape": f"batch {b}, length {t}, vocab {v}, emb {e}, hidden {h}, {layers}+{layers} "
                     f"layers (bi-LSTM enc), Luong general attention, clip 1, Adam lr {lr}"}


# ---------------------------------------------------------------- registry

MIRRORS = {
    "matmul": "bench/report.ts WORKLOADS 'matmul S' / bench/autoloss_impl.ts matmul",
    "gan_quick": "tasks/gan/task.ts GanTask.step (#dBranch / #gBranch + #record), "
                 "configs/gan/quick.yaml, tasks/gan/model.ts Dcgan",
    "dcgan": "bench/conv.bench.ts oursDcgan ('dcgan D+G step batch 64')",
    "mlp": "bench/mlp_step.ts mlpWorkload with bench/report.ts MLP params",
    "regression": "bench/dgs.ts (regression, 50 lambdas, joint) -> tasks/l1/task.ts "
                  "L1ScheduleTask.step + #observe, tasks/l1/regression.ts forward",
    "nmt": "bench/nmt_step.ts autolossStep (tasks/nmt/model.ts Seq2Seq)",
}

# name -> (group, factory, default iters, default warmup)
WORKLOADS = {
    "matmul_256": ("matmul", lambda: make_matmul(256), 15, 3),
    "matmul_512": ("matmul", lambda: make_matmul(512), 10, 2),
    "matmul_1024": ("matmul", lambda: make_matmul(1024), 7, 2),
    "gan_quick": ("gan_quick", make_gan_quick, 20, 3),
    "dcgan_authors_step": ("dcgan", make_dcgan_authors, 6, 1),
    "mlp_step": ("mlp", make_mlp, 15, 3),
    "regression_step": ("regression", make_regression, 15, 3),
    "nmt_step": ("nmt", make_nmt, 6, 1),
}


def selected(only):
    if not only:
        return list(WORKLOADS)
    want = [w.strip() for w in only.split(",") if w.strip()]
    out = []
    for name, (group, *_rest) in WORKLOADS.items():
        if any(name.startswith(w) or group.startswith(w) or w.startswith(name) for w in want):
            out.append(name)
    if not out:
        log(f"--only {only}: no workload matches; names: {', '.join(WORKLOADS)}; "
            f"groups: {', '.join(GROUPS)}")
        sys.exit(1)
    return out


def summarize(samples):
    return statistics.median(samples), min(samples)


def main():
    threads = [int(t) for t in ARGS.threads.split(",") if t.strip()]
    names = selected(ARGS.only)
    blas, core = blas_summary()
    load_before = os.getloadavg()
    began = time.perf_counter()
    results = {}
    for name in names:
        group, factory, dflt_iters, dflt_warm = WORKLOADS[name]
        iters = ARGS.iters if ARGS.iters > 0 else dflt_iters
        warm = ARGS.warmup if ARGS.warmup >= 0 else dflt_warm
        # One workload per thread count, each built from seed 1; the timed iterations then
        # alternate between the thread counts, so drifting machine load biases neither.
        made, reps = {}, {}
        t0 = time.perf_counter()
        for n in threads:
            set_threads(n)
            torch.manual_seed(1)
            made[n] = factory()
            reps[n] = prepare(made[n]["phases"], warm)
        meta = made[threads[0]]
        per_thread = {n: ({p: [] for p, _ in meta["phases"]}, reps[n]) for n in threads}
        for _ in range(iters):
            for n in threads:
                set_threads(n)
                one_iteration(made[n]["phases"], 1)  # untimed: re-wakes the thread pools
                for p, ms in one_iteration(made[n]["phases"], reps[n]).items():
                    per_thread[n][0][p].append(ms)
        for n in threads:
            times = per_thread[n][0]
            log(f"{name} {n}t: " + ", ".join(
                f"{ph} {statistics.median(v):.2f} ms" for ph, v in times.items())
                + f" (R={reps[n]}, {iters} iters)")
        log(f"{name}: {time.perf_counter() - t0:.1f} s")
        del made
        phase_names = [p for p, _ in meta["phases"]]

        def entry(keys, label_shape, combine):
            e = {"shape": label_shape, "mirrors": MIRRORS[group]}
            gflop = sum(meta["gflop"][k] for k in keys)
            gflop = gflop / len(keys) if combine == "mean" else gflop
            e["gflop"] = round(gflop, 6)
            for n in threads:
                times, reps = per_thread[n]
                it = len(times[keys[0]])
                # per iteration: sum (or mean) over the phases, then the median over iterations
                series = [sum(times[k][i] for k in keys) for i in range(it)]
                if combine == "mean":
                    series = [s / len(keys) for s in series]
                med, best = summarize(series)
                e[f"ms_{n}t"] = round(med, 4)
                e[f"ms_min_{n}t"] = round(best, 4)
                e[f"gflops_{n}t"] = round(gflop / (med / 1e3), 3) if gflop > 0 else None
                e[f"reps_{n}t"] = reps
            return e

        if name == "gan_quick":
            results["gan_quick_d_step"] = entry(["d"], meta["shape"] + "; D step", "sum")
            results["gan_quick_g_step"] = entry(["g"], meta["shape"] + "; G step", "sum")
            results["gan_quick_step"] = entry(["d", "g"], meta["shape"] + "; mean of D and G",
                                              "mean")
        else:
            e = entry(phase_names, meta["shape"], "sum")
            if len(phase_names) > 1:
                e["phases"] = {p: entry([p], meta["shape"], "sum") for p in phase_names}
                for sub in e["phases"].values():
                    sub.pop("mirrors")
                    sub.pop("shape")
            results[name] = e
    load_after = os.getloadavg()
    total_s = time.perf_counter() - began

    # ---- table on stderr
    cols = ["workload"] + [f"ms {n}t" for n in threads] + [f"min {n}t" for n in threads] + \
        [f"GFLOP/s {n}t" for n in threads]
    rows = []
    for name, e in results.items():
        row = [name]
        row += [f"{e[f'ms_{n}t']:.3f}" for n in threads]
        row += [f"{e[f'ms_min_{n}t']:.3f}" for n in threads]
        row += ["-" if e[f"gflops_{n}t"] is None else f"{e[f'gflops_{n}t']:.1f}" for n in threads]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows + [cols]) for i in range(len(cols))]
    log("")
    log(f"torch {torch.__version__}, {cpu_model()}, {len(os.sched_getaffinity(0))} CPUs, "
        f"OpenBLAS core {core}; load {load_before[0]:.2f} before / {load_after[0]:.2f} after; "
        f"{total_s:.0f} s")
    log("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cols)) + " |")
    log("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        log("| " + " | ".join((c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]))
                              for i, c in enumerate(r)) + " |")
    for name, e in results.items():
        log(f"  {name}: {e['shape']}")

    print(json.dumps({
        "torch": torch.__version__,
        "threads_available": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "blas": blas,
        "openblas_core": core,
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "threads": threads,
        "loadavg": {"before": load_before, "after": load_after},
        "seconds": round(total_s, 1),
        "workloads": results,
    }, indent=2))


if __name__ == "__main__":
    main()
