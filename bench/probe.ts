/**
 * Raw WebGPU probe (no TF.js, no autoloss): measures the fixed costs that bound any WebGPU
 * tensor library on this adapter, so benchmark numbers can be read against them.
 *
 * Run with `npx -y deno@2.9.6 run -A bench/probe.ts` (add `--json` for machine-readable output).
 *
 * It measures:
 * - readback latency: a 16-byte copy into a MAP_READ buffer, submit, `mapAsync`, unmap;
 * - `queue.onSubmittedWorkDone()` latency after an empty submit, and whether it really waits for
 *   queued GPU work (checked against a ~50 ms busy shader);
 * - per-dispatch cost: N tiny dispatches recorded in one compute pass with one submit (with one
 *   shared bind group, and with a fresh bind group per dispatch as a tensor library makes), versus
 *   one submit (own encoder and pass) per dispatch; both end with one readback, whose median latency
 *   is subtracted before dividing by N;
 * - pipeline compile time for a trivial shader and a 16x16-tiled matmul shader, with
 *   `createComputePipeline` and `createComputePipelineAsync` (each shader text is made unique so
 *   no cache can answer).
 *
 * The device is requested with the adapter's own limits copied into `requiredLimits`.
 * @module
 */

/** One measured row of the probe table. */
export interface ProbeRow {
  /** What was measured. */
  name: string;
  /** The value, in `unit`. */
  value: number;
  /** Unit of `value`, e.g. "ms" or "us". */
  unit: string;
  /** How it was measured. */
  note: string;
}

const LIMIT_NAMES = [
  "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxBindGroups",
  "maxBindingsPerBindGroup",
  "maxUniformBufferBindingSize",
  "minStorageBufferOffsetAlignment",
] as const;

/**
 * Requests an adapter and a device with the adapter's limits requested explicitly.
 * @throws Error when no adapter is available.
 */
export async function probeDevice(): Promise<{ adapter: GPUAdapter; device: GPUDevice }> {
  try {
    if (!Deno.env.get("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch {
    // no env permission: Mesa only prints a harmless warning
  }
  const adapter = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error("no WebGPU adapter (install mesa-vulkan-drivers for llvmpipe)");
  const requiredLimits: Record<string, number> = {};
  const limits = adapter.limits as unknown as Record<string, number>;
  for (const name of LIMIT_NAMES) {
    if (typeof limits[name] === "number") requiredLimits[name] = limits[name];
  }
  const device = await adapter.requestDevice({ requiredLimits });
  return { adapter, device };
}

/** Median of a list of numbers (the list is not modified). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const COUNTER_WGSL = `
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@compute @workgroup_size(1) fn main() { buf[0] = buf[0] + 1.0; }`;

const BUSY_WGSL = `
@group(0) @binding(0) var<storage, read_write> buf: array<f32>;
@group(0) @binding(1) var<uniform> iters: vec4<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var x = f32(g.x);
  for (var i = 0u; i < iters.x; i++) { x = x * 0.999 + 1.0; }
  buf[g.x] = x;
}`;

function matmulWgsl(salt: number): string {
  return `// salt ${salt}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> dims: vec4<u32>;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;
@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_id) l: vec3<u32>) {
  let m = dims.x; let k = dims.y; let n = dims.z;
  var acc = ${salt}.0 * 0.0;
  for (var t = 0u; t < k; t += 16u) {
    let ac = t + l.x; let br = t + l.y;
    ta[l.y][l.x] = select(0.0, a[g.y * k + ac], g.y < m && ac < k);
    tb[l.y][l.x] = select(0.0, b[br * n + g.x], br < k && g.x < n);
    workgroupBarrier();
    for (var i = 0u; i < 16u; i++) { acc += ta[l.y][i] * tb[i][l.x]; }
    workgroupBarrier();
  }
  if (g.y < m && g.x < n) { c[g.y * n + g.x] = acc; }
}`;
}

/** Runs the whole probe and returns its rows. */
export async function runProbe(opts: { dispatches?: number; samples?: number } = {}): Promise<{
  adapter: string;
  limits: Record<string, number>;
  rows: ProbeRow[];
}> {
  const N = opts.dispatches ?? 1000;
  const S = opts.samples ?? 20;
  const { adapter, device } = await probeDevice();
  const limits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    limits[name] = (device.limits as unknown as Record<string, number>)[name];
  }
  const rows: ProbeRow[] = [];
  const q = device.queue;

  const storage = device.createBuffer({
    size: 256 * 1024,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const staging = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  /** Copies 16 bytes of `storage` into `staging`, submits, maps and returns the first float. */
  async function readback(): Promise<number> {
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(storage, 0, staging, 0, 16);
    q.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const v = new Float32Array(staging.getMappedRange())[0];
    staging.unmap();
    return v;
  }

  // 1. readback latency
  await readback();
  const rb: number[] = [];
  for (let i = 0; i < S; i++) {
    const t0 = performance.now();
    await readback();
    rb.push(performance.now() - t0);
  }
  const readbackMs = median(rb);
  rows.push({
    name: "readback 16 B (copy+submit+mapAsync)",
    value: readbackMs,
    unit: "ms",
    note: `median of ${S}; min ${Math.min(...rb).toFixed(2)}, max ${Math.max(...rb).toFixed(2)}`,
  });

  // 2. onSubmittedWorkDone latency after an empty submit
  const wd: number[] = [];
  for (let i = 0; i < S; i++) {
    const t0 = performance.now();
    q.submit([device.createCommandEncoder().finish()]);
    await q.onSubmittedWorkDone();
    wd.push(performance.now() - t0);
  }
  rows.push({
    name: "onSubmittedWorkDone (empty submit)",
    value: median(wd),
    unit: "ms",
    note: `median of ${S}; min ${Math.min(...wd).toFixed(2)}, max ${Math.max(...wd).toFixed(2)}`,
  });

  // 2b. does onSubmittedWorkDone wait for real work? Calibrate a busy shader, then compare.
  const busyMod = device.createShaderModule({ code: BUSY_WGSL });
  const busyPipe = device.createComputePipeline({
    layout: "auto",
    compute: { module: busyMod, entryPoint: "main" },
  });
  const iters = device.createBuffer({
    size: 16,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  const busyGroup = device.createBindGroup({
    layout: busyPipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: storage } }, {
      binding: 1,
      resource: { buffer: iters },
    }],
  });
  function submitBusy(): void {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(busyPipe);
    pass.setBindGroup(0, busyGroup);
    pass.dispatchWorkgroups(64); // 4096 invocations
    pass.end();
    q.submit([enc.finish()]);
  }
  let busyIters = 1000;
  let busyMs = 0;
  for (let tries = 0; tries < 12; tries++) {
    q.writeBuffer(iters, 0, new Uint32Array([busyIters, 0, 0, 0]));
    const t0 = performance.now();
    submitBusy();
    await readback();
    busyMs = performance.now() - t0 - readbackMs;
    if (busyMs > 40) break;
    busyIters *= Math.max(2, Math.min(8, Math.ceil(50 / Math.max(busyMs, 1))));
  }
  const waited: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    submitBusy();
    await q.onSubmittedWorkDone();
    waited.push(performance.now() - t0);
    await readback(); // drain, in case onSubmittedWorkDone did not wait
  }
  const waitMs = median(waited);
  rows.push({
    name: "onSubmittedWorkDone after busy shader",
    value: waitMs,
    unit: "ms",
    note: `busy shader takes ~${busyMs.toFixed(1)} ms (via readback): ${
      waitMs > 0.7 * busyMs ? "it waits for the GPU" : "it does NOT wait for the GPU"
    }`,
  });

  // 3. per-dispatch cost
  const counterMod = device.createShaderModule({ code: COUNTER_WGSL });
  const counterPipe = device.createComputePipeline({
    layout: "auto",
    compute: { module: counterMod, entryPoint: "main" },
  });
  const counterGroup = device.createBindGroup({
    layout: counterPipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: storage } }],
  });
  async function batched(n: number): Promise<number> {
    q.writeBuffer(storage, 0, new Float32Array([0]));
    const t0 = performance.now();
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(counterPipe);
    pass.setBindGroup(0, counterGroup);
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(1);
    pass.end();
    q.submit([enc.finish()]);
    const v = await readback();
    if (v !== n) throw new Error(`batched dispatch count ${v} != ${n}`);
    return performance.now() - t0;
  }
  async function batchedFreshGroups(n: number): Promise<number> {
    q.writeBuffer(storage, 0, new Float32Array([0]));
    const t0 = performance.now();
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(counterPipe);
    const layout = counterPipe.getBindGroupLayout(0);
    for (let i = 0; i < n; i++) {
      pass.setBindGroup(
        0,
        device.createBindGroup({
          layout,
          entries: [{ binding: 0, resource: { buffer: storage } }],
        }),
      );
      pass.dispatchWorkgroups(1);
    }
    pass.end();
    q.submit([enc.finish()]);
    const v = await readback();
    if (v !== n) throw new Error(`batched dispatch count ${v} != ${n}`);
    return performance.now() - t0;
  }
  async function separate(n: number): Promise<number> {
    q.writeBuffer(storage, 0, new Float32Array([0]));
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(counterPipe);
      pass.setBindGroup(0, counterGroup);
      pass.dispatchWorkgroups(1);
      pass.end();
      q.submit([enc.finish()]);
    }
    const v = await readback();
    if (v !== n) throw new Error(`separate dispatch count ${v} != ${n}`);
    return performance.now() - t0;
  }
  await batched(16);
  await separate(16);
  await batchedFreshGroups(16);
  const bt: number[] = [];
  const st: number[] = [];
  const ft: number[] = [];
  for (let i = 0; i < 5; i++) {
    bt.push(await batched(N));
    ft.push(await batchedFreshGroups(N));
    st.push(await separate(N));
  }
  const perBatched = (median(bt) - readbackMs) / N * 1000;
  const perSeparate = (median(st) - readbackMs) / N * 1000;
  rows.push({
    name: `dispatch in one pass, one submit (N=${N})`,
    value: perBatched,
    unit: "us",
    note: `(median total ${median(bt).toFixed(1)} ms - readback) / N, 5 runs`,
  });
  rows.push({
    name: `dispatch in one pass, new bind group each (N=${N})`,
    value: (median(ft) - readbackMs) / N * 1000,
    unit: "us",
    note: `as above plus createBindGroup + setBindGroup per dispatch (median ${
      median(ft).toFixed(1)
    } ms)`,
  });
  rows.push({
    name: `dispatch with one submit each (N=${N})`,
    value: perSeparate,
    unit: "us",
    note: `(median total ${median(st).toFixed(1)} ms - readback) / N, 5 runs`,
  });

  // 4. pipeline compile time (unique shader text each time defeats any cache)
  let salt = 1;
  const compile = async (
    make: (s: number) => string,
    asyncApi: boolean,
  ): Promise<number> => {
    const ts: number[] = [];
    for (let i = 0; i < 5; i++) {
      const code = make(salt++);
      const t0 = performance.now();
      const module = device.createShaderModule({ code });
      const desc: GPUComputePipelineDescriptor = {
        layout: "auto",
        compute: { module, entryPoint: "main" },
      };
      if (asyncApi) await device.createComputePipelineAsync(desc);
      else device.createComputePipeline(desc);
      ts.push(performance.now() - t0);
    }
    return median(ts);
  };
  const trivial = (s: number) => `// ${s}\n${COUNTER_WGSL}`;
  rows.push({
    name: "compile trivial shader (sync)",
    value: await compile(trivial, false),
    unit: "ms",
    note: "createShaderModule + createComputePipeline, median of 5",
  });
  rows.push({
    name: "compile trivial shader (async)",
    value: await compile(trivial, true),
    unit: "ms",
    note: "createShaderModule + createComputePipelineAsync, median of 5",
  });
  rows.push({
    name: "compile tiled matmul shader (sync)",
    value: await compile(matmulWgsl, false),
    unit: "ms",
    note: "16x16 workgroup-tiled matmul, median of 5",
  });
  rows.push({
    name: "compile tiled matmul shader (async)",
    value: await compile(matmulWgsl, true),
    unit: "ms",
    note: "16x16 workgroup-tiled matmul, median of 5",
  });

  for (const b of [storage, staging, iters]) b.destroy();
  device.destroy();
  return { adapter: adapter.info.description || adapter.info.vendor, limits, rows };
}

/** Renders probe rows as a markdown table. */
export function probeTable(rows: ProbeRow[]): string {
  const lines = ["| probe | value | note |", "| --- | ---: | --- |"];
  for (const r of rows) {
    const v = r.value < 10 ? r.value.toFixed(2) : r.value.toFixed(1);
    lines.push(`| ${r.name} | ${v} ${r.unit} | ${r.note} |`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const { adapter, limits, rows } = await runProbe();
  if (Deno.args.includes("--json")) {
    console.log(JSON.stringify({ adapter, deno: Deno.version.deno, limits, rows }, null, 2));
  } else {
    console.log(`WebGPU probe on ${adapter} (Deno ${Deno.version.deno})`);
    console.log(
      `device limits (requested = adapter's): ${
        Object.entries(limits).map(([k, v]) => `${k}=${v}`).join(", ")
      }\n`,
    );
    console.log(probeTable(rows));
  }
}
