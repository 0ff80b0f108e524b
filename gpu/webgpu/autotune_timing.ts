/**
 * Timing of matmul candidates for gpu/webgpu/autotune.ts: a rendered candidate prepared over
 * scratch buffers, timed by wall clock around a submit or by timestamp queries (median of the
 * repetitions).
 * @module
 */

import { type Rendered, SCRATCH } from "./render.ts";

// ------------------------------------------------------------------ timing

/** A candidate prepared for timing: records its passes into a compute pass. */
export interface Runner {
  encode(pass: GPUComputePassEncoder): void;
  destroy(): void;
}

export function prepare(dev: GPUDevice, r: Rendered, buffers: GPUBuffer[]): Runner {
  const scratch = r.scratch
    ? dev.createBuffer({ size: Math.ceil(r.scratch / 16) * 16, usage: GPUBufferUsage.STORAGE })
    : null;
  const passes = [...(r.before ?? []), {
    code: r.code,
    grid: r.grid,
    access: r.access,
    bind: r.bind ?? r.access.map((_, i) => i),
  }].map((p) => {
    const module = dev.createShaderModule({ code: p.code });
    const pipeline = dev.createComputePipeline({
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    const bg = dev.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: p.bind.map((b, i) => ({
        binding: i,
        resource: { buffer: b === SCRATCH ? scratch! : buffers[b] },
      })),
    });
    return { pipeline, bg, grid: p.grid };
  });
  return {
    encode(pass) {
      for (const p of passes) {
        pass.setPipeline(p.pipeline);
        pass.setBindGroup(0, p.bg);
        pass.dispatchWorkgroups(p.grid[0], p.grid[1], p.grid[2]);
      }
    },
    destroy() {
      scratch?.destroy();
    },
  };
}

/** Wall milliseconds of `reps` repetitions in one submit, through `onSubmittedWorkDone`. */
export async function wall(dev: GPUDevice, run: Runner | null, reps: number): Promise<number> {
  const t0 = performance.now();
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (let i = 0; i < reps && run; i++) run.encode(pass);
  pass.end();
  dev.queue.submit([enc.finish()]);
  await dev.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

/** Median GPU milliseconds of `reps` repetitions, one timestamped pass each. */
export async function stamped(dev: GPUDevice, run: Runner, reps: number): Promise<number> {
  const qs = dev.createQuerySet({ type: "timestamp", count: 2 * reps });
  const resolve = dev.createBuffer({
    size: 16 * reps,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const read = dev.createBuffer({
    size: 16 * reps,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = dev.createCommandEncoder();
  for (let i = 0; i < reps; i++) {
    const pass = enc.beginComputePass({
      timestampWrites: {
        querySet: qs,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    });
    run.encode(pass);
    pass.end();
  }
  enc.resolveQuerySet(qs, 0, 2 * reps, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * reps);
  dev.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  for (const b of [resolve, read]) b.destroy();
  qs.destroy();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) {
    const dt = Number(t[2 * i + 1] - t[2 * i]) / 1e6;
    if (dt > 0 && dt < 1e6) ms.push(dt);
  }
  if (ms.length === 0) throw new Error("no valid timestamps");
  ms.sort((a, b) => a - b);
  return ms[ms.length >> 1];
}
