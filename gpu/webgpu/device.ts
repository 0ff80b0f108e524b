/**
 * WebGPU adapter and device acquisition.
 *
 * The device is requested lazily (importing this module acquires nothing) and with the adapter's
 * own limits requested explicitly: a default device gets far lower limits (8 storage buffers per
 * stage, 128 MiB bindings) than the adapter offers.
 * @module
 */

import { envGet } from "../backend.ts";

/** A description of the adapter in use, as printed by `cli.ts info`. */
export interface AdapterReport {
  /** Vendor string (a PCI id on some drivers). */
  vendor: string;
  /** Architecture string, often empty. */
  architecture: string;
  /** Human-readable description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  description: string;
  /** True for software adapters such as Mesa's llvmpipe. */
  isFallbackAdapter: boolean;
  /** Adapter features, sorted. */
  features: string[];
  /** The limits we requested for the device (the adapter's maxima). */
  limits: Record<string, number>;
  /** The `DENO_WEBGPU_BACKEND` value in force, or "default". */
  backend: string;
  /** Deno version running us. */
  deno: string;
}

/** Thrown when no WebGPU adapter can be found; the message names the fix. */
export class NoAdapterError extends Error {
  /** Marks the error as meant for the user (the CLI prints it without a stack). */
  readonly userFacing = true;

  constructor() {
    super(
      "No WebGPU adapter found. autoloss needs a GPU driver with Vulkan/Metal/DX12 support, or on a " +
        "machine without a GPU, Mesa's software rasterizer llvmpipe:\n" +
        "  sudo apt-get install -y mesa-vulkan-drivers libvulkan1\n" +
        "Then check with: npx -y deno@2.9.6 run -A cli.ts info\n" +
        "(DENO_WEBGPU_BACKEND=vulkan|gl selects a backend; it is " +
        `${envGet("DENO_WEBGPU_BACKEND") ?? "unset"} now.)`,
    );
    this.name = "NoAdapterError";
  }
}

/** The limits we copy from the adapter into `requiredLimits`. */
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

let devicePromise: Promise<{ adapter: GPUAdapter; device: GPUDevice }> | null = null;
let lostReason: string | null = null;

function quietMesa(): void {
  // Mesa prints "XDG_RUNTIME_DIR is invalid" twice when it is unset; a default keeps it quiet.
  try {
    if (!envGet("XDG_RUNTIME_DIR")) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  } catch {
    // Without --allow-env we cannot set it; the warning is harmless.
  }
}

let adapterPromise: Promise<GPUAdapter | null> | null = null;

/** The WebGPU adapter (requested once), or null when there is none. Acquires no device. */
export function getAdapter(): Promise<GPUAdapter | null> {
  adapterPromise ??= (async () => {
    quietMesa();
    if (typeof navigator === "undefined" || !("gpu" in navigator)) return null;
    return await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  })();
  return adapterPromise;
}

async function acquire(): Promise<{ adapter: GPUAdapter; device: GPUDevice }> {
  const adapter = await getAdapter();
  if (!adapter) throw new NoAdapterError();
  const requiredLimits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    // Some drivers report limits beyond 2^53 (or 2^32 for 32-bit ones): clamp to what the
    // WebGPU API can carry, never above the adapter's value.
    if (typeof v === "number" && Number.isFinite(v)) {
      requiredLimits[name] = Math.min(v, name.endsWith("Size") ? 2 ** 52 : 2 ** 32 - 1);
    }
  }
  const requiredFeatures: GPUFeatureName[] = [];
  for (const f of ["timestamp-query", "shader-f16"] as GPUFeatureName[]) {
    if (adapter.features.has(f)) requiredFeatures.push(f);
  }
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (err) {
    // A driver that refuses its own maxima still gets a device with the defaults (lower limits).
    console.error(
      `autoloss: the adapter refused its own limits (${(err as Error).message}); ` +
        "retrying with the WebGPU defaults",
    );
    device = await adapter.requestDevice({ requiredFeatures });
  }
  device.lost.then((info) => {
    lostReason = `${info.reason}: ${info.message}`;
  });
  return { adapter, device };
}

/**
 * Returns the shared GPU device, acquiring it on first use.
 * @throws NoAdapterError when there is no adapter.
 */
export function getDevice(): Promise<{ adapter: GPUAdapter; device: GPUDevice }> {
  if (!devicePromise) {
    devicePromise = acquire();
    devicePromise.catch(() => {
      devicePromise = null;
    });
  }
  return devicePromise;
}

/** Throws a clear error if the device has been lost (never hang on a lost device). */
export function checkDeviceLost(): void {
  if (lostReason !== null) {
    throw new Error(
      `The WebGPU device was lost (${lostReason}). Restart the process; if it recurs, ` +
        "lower the batch size or check the GPU driver.",
    );
  }
}

/** Describes the adapter and the limits requested; acquires the device if needed. */
export async function adapterInfo(): Promise<AdapterReport> {
  const { adapter, device } = await getDevice();
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    const v = (device.limits as unknown as Record<string, number>)[name];
    if (typeof v === "number") limits[name] = v;
  }
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description,
    isFallbackAdapter: info.isFallbackAdapter ?? false,
    features: [...adapter.features].sort(),
    limits,
    backend: envGet("DENO_WEBGPU_BACKEND") ?? "default",
    deno: Deno.version.deno,
  };
}
