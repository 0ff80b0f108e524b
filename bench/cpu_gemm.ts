/**
 * GFLOP/s of the WebAssembly SIMD matrix multiply (gpu/cpu/gemm.ts) on this machine: square
 * products, the DCGAN im2col convolution products of the AutoLoss GAN (forward, and the weight
 * and input gradient products with their transposed operands), an MLP layer and matrix-vector
 * products. Columns:
 *
 * - `relaxed`: 1 thread, `f32x4.relaxed_madd` (FMA);
 * - `mul+add`: 1 thread, the non-relaxed module;
 * - `2 thr`: the main thread plus one worker of the CPU backend's pool (gpu/cpu/pool.ts), each
 *   doing half the columns (half the rows for narrow products), synchronised through Atomics on
 *   the shared memory;
 * - `naive JS`: a plain triple loop over Float32Arrays (i-p-j order, the fast one for JS);
 * - PyTorch (if `/usr/bin/python3` has torch): the same products with 1 and 2 threads.
 *
 * The machine is shared and noisy, so every cell is the best of several interleaved timing
 * rounds (the median is printed after a slash). FLOPs = 2 m n k.
 *
 * Run: `npx -y deno@2.9.6 run -A bench/cpu_gemm.ts [--quick] [--no-torch]` (about 3 minutes).
 * @module
 */

import {
  GEMM_WORK_BYTES,
  type GemmFn,
  GemmKernel,
  gemmModule,
  relaxedSimdSupported,
} from "../gpu/cpu/gemm.ts";
import { WorkerPool } from "../gpu/cpu/pool.ts";
import { ModuleBuilder } from "../gpu/cpu/wasm_builder.ts";

/** One product: m x k times k x n, operands transposed or not. */
interface Shape {
  name: string;
  m: number;
  k: number;
  n: number;
  /** A stored [K, M]. */
  ta?: boolean;
  /** B stored [N, K]. */
  tb?: boolean;
}

const SHAPES: Shape[] = [
  { name: "square 256", m: 256, k: 256, n: 256 },
  { name: "square 512", m: 512, k: 512, n: 512 },
  { name: "square 1024", m: 1024, k: 1024, n: 1024 },
  { name: "square 1024, A^T B^T", m: 1024, k: 1024, n: 1024, ta: true, tb: true },
  { name: "conv D1 fwd W.col", m: 64, k: 25, n: 12544 },
  { name: "conv D1 dW = dY.col^T", m: 64, k: 12544, n: 25, tb: true },
  { name: "conv D1 dcol = W^T.dY", m: 25, k: 64, n: 12544, ta: true },
  { name: "conv D2 fwd W.col", m: 128, k: 1600, n: 3136 },
  { name: "conv D2 dW = dY.col^T", m: 128, k: 3136, n: 1600, tb: true },
  { name: "conv D2 dcol = W^T.dY", m: 1600, k: 128, n: 3136, ta: true },
  { name: "MLP x.W^T (32x100 -> 64)", m: 32, k: 100, n: 64, tb: true },
  { name: "MLP dx = dy.W", m: 32, k: 64, n: 100 },
  { name: "MLP dW = dy^T.x", m: 64, k: 32, n: 100, ta: true },
  { name: "matvec 1x1024 . 1024x1024", m: 1, k: 1024, n: 1024 },
  { name: "matvec 1024x1024 . 1024x1", m: 1024, k: 1024, n: 1 },
];

const quick = Deno.args.includes("--quick");
const useTorch = !Deno.args.includes("--no-torch");
const ROUNDS = quick ? 3 : 11;
/** Target seconds of one timing round of one cell. */
const ROUND_S = quick ? 0.08 : 0.1;

function cpuModel(): string {
  try {
    const text = Deno.readTextFileSync("/proc/cpuinfo");
    return /model name\s*:\s*(.+)/.exec(text)?.[1]?.trim() ?? "unknown CPU";
  } catch {
    return "unknown CPU";
  }
}

// ---- memory layout ----------------------------------------------------------------------------

const MAX_ELEMS = Math.max(...SHAPES.map((s) => Math.max(s.m * s.k, s.k * s.n, s.m * s.n)));
const align = (x: number) => Math.ceil(x / 256) * 256;
const CTRL1 = 256;
const A_PTR = align(CTRL1 + WorkerPool.controlBytes(2));
const B_PTR = align(A_PTR + 4 * MAX_ELEMS);
const C_PTR = align(B_PTR + 4 * MAX_ELEMS);
const WORK = [0, 1, 2].map((i) => align(C_PTR + 4 * MAX_ELEMS) + i * align(GEMM_WORK_BYTES));
const TOTAL = WORK[2] + align(GEMM_WORK_BYTES);
const memory = new WebAssembly.Memory({
  initial: Math.ceil(TOTAL / 65536),
  maximum: 65536,
  shared: true,
});
const F = new Float32Array(memory.buffer);

const relaxed = GemmKernel.create(memory, { relaxed: true });
const plain = GemmKernel.create(memory, { relaxed: false });
const pool = new WorkerPool(memory, gemmModule({ relaxed: relaxed.relaxed }), ["gemm"], 2, CTRL1);

type GemmCall = Parameters<GemmFn>;

// ---- one product's calls ----------------------------------------------------------------------

function call(s: Shape, r0: number, r1: number, c0: number, c1: number, work: number): GemmCall {
  const sai = s.ta ? 1 : s.k, sap = s.ta ? s.m : 1;
  const sbp = s.tb ? 1 : s.n, sbj = s.tb ? s.k : 1;
  return [A_PTR, sai, sap, B_PTR, sbp, sbj, C_PTR, s.n, s.k, r0, r1, c0, c1, 0, work, work];
}

/** Two halves: columns at a multiple of 8 when wide enough, else rows at a multiple of 6. */
function halves(s: Shape, w0: number, w1: number): [GemmCall, GemmCall] {
  if (s.n >= 64) {
    const mid = Math.round(s.n / 16) * 8;
    return [call(s, 0, s.m, 0, mid, w0), call(s, 0, s.m, mid, s.n, w1)];
  }
  const mid = Math.min(s.m, Math.round(s.m / 12) * 6) || Math.ceil(s.m / 2);
  return [call(s, 0, mid, 0, s.n, w0), call(s, mid, s.m, 0, s.n, w1)];
}

function naive(s: Shape): void {
  const { m, k, n } = s;
  const a0 = A_PTR >> 2, b0 = B_PTR >> 2, c0 = C_PTR >> 2;
  const sai = s.ta ? 1 : k, sap = s.ta ? m : 1;
  const sbp = s.tb ? 1 : n, sbj = s.tb ? k : 1;
  for (let i = 0; i < m; i++) {
    const ci = c0 + i * n;
    for (let j = 0; j < n; j++) F[ci + j] = 0;
    for (let p = 0; p < k; p++) {
      const x = F[a0 + i * sai + p * sap];
      const bp = b0 + p * sbp;
      for (let j = 0; j < n; j++) F[ci + j] += x * F[bp + j * sbj];
    }
  }
}

/** Times `fn` in interleaved rounds: returns GFLOP/s per round for each function. */
function timeAll(flops: number, fns: (() => void)[], rounds: number, warmMs = 250): number[][] {
  const reps = fns.map((fn) => {
    // Warm-up (tier-up to TurboFan), then calibration.
    let t0 = performance.now();
    while (performance.now() - t0 < warmMs) fn();
    t0 = performance.now();
    let r = 0;
    while (performance.now() - t0 < 50 || r < 1) {
      fn();
      r++;
    }
    const per = (performance.now() - t0) / r;
    return Math.max(1, Math.round((ROUND_S * 1000) / per));
  });
  const out = fns.map(() => [] as number[]);
  for (let t = 0; t < rounds; t++) {
    fns.forEach((fn, i) => {
      const t0 = performance.now();
      for (let r = 0; r < reps[i]; r++) fn();
      out[i].push((flops * reps[i]) / ((performance.now() - t0) * 1e6));
    });
  }
  return out;
}

const fmt = (xs: number[]) => {
  const v = [...xs].sort((a, b) => b - a);
  return `${v[0].toFixed(1)}/${v[Math.floor(v.length / 2)].toFixed(1)}`;
};

// ---- machine check: FMA peak with 1 and 2 threads -------------------------------------------

/**
 * A register-only loop of 12 independent `f32x4.relaxed_madd` chains (no memory traffic): the
 * most a wasm thread can do here. Run in 1 worker, then in 2 at once, it shows how much of a
 * second core the host gives right now (the test machine's second vCPU is sometimes
 * time-sliced with the first: then 2 threads each run at half speed).
 */
async function fmaPeak(): Promise<[number, number[]]> {
  const mb = new ModuleBuilder();
  mb.addFunction("f", ["i32"], ["f32"], (f) => {
    const acc = Array.from({ length: 12 }, () => f.local("v128"));
    const x = f.local("v128");
    const y = f.local("v128");
    f.v128ConstF32([1, 1, 1, 1]).localSet(x).v128ConstF32([0.5, 0.5, 0.5, 0.5]).localSet(y);
    f.loop((top) => {
      for (let u = 0; u < 4; u++) {
        for (const a of acc) f.localGet(x).localGet(y).localGet(a).f32x4RelaxedMadd().localSet(a);
      }
      f.localGet(0).i32Const(1).i32Sub().localTee(0).brIf(top);
    });
    f.localGet(acc[0]);
    for (const a of acc.slice(1)) f.localGet(a).f32x4Add();
    f.f32x4ExtractLane(0);
  });
  const src = `
    const fn = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array([${mb.build()}])))
      .exports.f;
    fn(1000); fn(200000);
    self.onmessage = (e) => {
      let best = 0;
      for (let t = 0; t < e.data; t++) {
        const t0 = performance.now(); fn(5e6);
        best = Math.max(best, (5e6 * 4 * 12 * 8) / ((performance.now() - t0) * 1e6));
      }
      self.postMessage(best);
    };
    self.postMessage("ready");`;
  const url = `data:application/javascript,${encodeURIComponent(src)}`;
  const start = () =>
    new Promise<Worker>((resolve) => {
      const w = new Worker(url, { type: "module" });
      w.onmessage = () => resolve(w);
    });
  const ask = (w: Worker, rounds: number) =>
    new Promise<number>((resolve) => {
      w.onmessage = (e) => resolve(e.data);
      w.postMessage(rounds);
    });
  const ws = [await start(), await start()];
  const one = await ask(ws[0], 5);
  const two = await Promise.all(ws.map((w) => ask(w, 5)));
  for (const w of ws) w.terminate();
  return [one, two];
}

async function printPeak(when: string): Promise<void> {
  const [one, two] = await fmaPeak();
  console.log(
    `FMA-loop peak (${when}): 1 thread ${one.toFixed(1)} GFLOP/s; 2 threads at once ` +
      `${two.map((x) => x.toFixed(1)).join(" + ")} = ${(two[0] + two[1]).toFixed(1)} GFLOP/s`,
  );
}

// ---- PyTorch peer -----------------------------------------------------------------------------

function torchGflops(shapes: Shape[]): Map<string, [string, string]> | undefined {
  const spec = JSON.stringify(shapes.map((s) => [s.m, s.k, s.n, !!s.ta, !!s.tb]));
  const py = `
import json, time, torch
shapes = json.loads('${spec}')
out = []
for threads in (1, 2):
    torch.set_num_threads(threads)
    row = []
    for m, k, n, ta, tb in shapes:
        a = torch.randn(k, m).t() if ta else torch.randn(m, k)
        b = torch.randn(n, k).t() if tb else torch.randn(k, n)
        f = 2.0 * m * n * k
        t0 = time.perf_counter(); c = 0
        while time.perf_counter() - t0 < 0.3 or c < 2:
            a @ b; c += 1
        reps = max(1, int(c * ${ROUND_S} / 0.3))
        rs = []
        for _ in range(${ROUNDS}):
            t0 = time.perf_counter()
            for _ in range(reps): a @ b
            rs.append(f * reps / (time.perf_counter() - t0) / 1e9)
        rs.sort(reverse=True)
        row.append("%.1f/%.1f" % (rs[0], rs[len(rs) // 2]))
    out.append(row)
print(json.dumps(out))
`;
  try {
    const r = new Deno.Command("/usr/bin/python3", { args: ["-c", py], stderr: "piped" })
      .outputSync();
    if (!r.success) return undefined;
    const [one, two] = JSON.parse(new TextDecoder().decode(r.stdout)) as string[][];
    return new Map(shapes.map((s, i) => [s.name, [one[i], two[i]]]));
  } catch {
    return undefined;
  }
}

// ---- run --------------------------------------------------------------------------------------

console.log(`CPU: ${cpuModel()}, ${navigator.hardwareConcurrency} logical CPUs`);
console.log(`Deno ${Deno.version.deno}, V8 ${Deno.version.v8}`);
console.log(`relaxed SIMD: ${relaxedSimdSupported()}, scratch per call: ${GEMM_WORK_BYTES} bytes`);
await printPeak("before");
console.log(`GFLOP/s, best/median of ${ROUNDS} interleaved rounds\n`);

const torch = useTorch ? torchGflops(SHAPES) : undefined;

const header = ["product", "m x k x n", "relaxed", "mul+add", "2 thr", "naive JS"];
if (torch) header.push("torch 1T", "torch 2T");
console.log(`| ${header.join(" | ")} |`);
console.log(`| ${header.map(() => "---").join(" | ")} |`);

for (const s of SHAPES) {
  for (let i = 0; i < s.m * s.k; i++) F[(A_PTR >> 2) + i] = Math.random() - 0.5;
  for (let i = 0; i < s.k * s.n; i++) F[(B_PTR >> 2) + i] = Math.random() - 0.5;
  const flops = 2 * s.m * s.n * s.k;
  const full = call(s, 0, s.m, 0, s.n, WORK[0]);
  const [h0, h1] = halves(s, WORK[0], WORK[1]);
  const fns = [
    () => relaxed.fn(...full),
    () => plain.fn(...full),
    () => pool.run(relaxed.fn, "gemm", [h0, h1]),
  ];
  const res = timeAll(flops, fns, ROUNDS);
  // Naive JS: a few runs only (it is slow).
  const nv = timeAll(flops, [() => naive(s)], flops > 1e9 ? 1 : 3, flops > 1e9 ? 0 : 250)[0];
  const cells = [s.name, `${s.m}x${s.k}x${s.n}`, ...res.map(fmt), fmt(nv)];
  if (torch) cells.push(...(torch.get(s.name) ?? ["-", "-"]));
  console.log(`| ${cells.join(" | ")} |`);
}
pool.close();
console.log();
await printPeak("after");
