/**
 * Shared WebAssembly memory for the tests of gpu/cpu/ (wasm_builder.test.ts, cpu_gemm.test.ts):
 * the page size and a shared, growable memory of at least a given size.
 * @module
 */

export const PAGE = 65536;

export function sharedMemory(bytes: number): WebAssembly.Memory {
  return new WebAssembly.Memory({
    initial: Math.ceil(bytes / PAGE),
    maximum: 65536,
    shared: true,
  });
}
