/**
 * A small WebAssembly binary builder, enough for the CPU backend's generated kernels: function
 * types, one imported memory (`env.memory`, usually shared), functions with parameters and
 * locals, exports, and an instruction emitter ({@link FunctionBuilder}) covering structured
 * control flow, i32/i64/f32 arithmetic, memory access with alignment/offset immediates, bulk
 * memory fill/copy, a few atomics, SIMD128 and the relaxed-SIMD fused multiply-add.
 *
 * No external tools: the module bytes are written here, section by section, as the binary
 * format specifies (https://webassembly.github.io/spec/core/binary/). Opcodes are checked by the
 * tests through `WebAssembly.validate` and by running them.
 *
 * ```ts
 * const mb = new ModuleBuilder();
 * mb.importMemory({ min: 1, max: 16, shared: true });
 * mb.addFunction("add", ["i32", "i32"], ["i32"], (f) => {
 *   f.localGet(0).localGet(1).i32Add();
 * });
 * const bytes = mb.build();
 * ```
 * @module
 */

import { FunctionBuilder } from "./wasm_function.ts";
import { name, section, uleb, VALTYPE, type ValType } from "./wasm_encoding.ts";

// The encodings (wasm_encoding.ts) and the instruction encoder (wasm_function.ts) live in their
// own files; re-exported so the kernels import everything from `wasm_builder.ts`.
export { type Label, type MemArg, sleb, uleb, type ValType } from "./wasm_encoding.ts";
export { FunctionBuilder } from "./wasm_function.ts";

/** Limits of the imported memory, in 64 KiB pages. */
export interface MemoryImport {
  /** Import module name (default "env"). */
  module?: string;
  /** Import field name (default "memory"). */
  name?: string;
  /** Minimum pages. */
  min: number;
  /** Maximum pages (required for shared memories). */
  max?: number;
  /** Shared memory (threads). */
  shared?: boolean;
}

interface FuncEntry {
  typeIndex: number;
  body: FunctionBuilder;
}

/**
 * Builds a module: call {@link importMemory} (optional), declare functions with
 * {@link declareFunction} / {@link addFunction}, then {@link build}. Function indices are
 * assigned in declaration order (there are no imported functions), so a function may call one
 * declared later by its index.
 */
export class ModuleBuilder {
  #types: string[] = [];
  #typeBytes: number[][] = [];
  #memory?: MemoryImport;
  #funcs: (FuncEntry | undefined)[] = [];
  #exports: { name: string; index: number }[] = [];

  /** Imports one linear memory (index 0). */
  importMemory(m: MemoryImport): this {
    if (m.shared && m.max === undefined) throw new Error("wasm builder: shared memory needs max");
    this.#memory = m;
    return this;
  }

  /** Returns the index of the function type (params) -> (results), adding it if new. */
  type(params: readonly ValType[], results: readonly ValType[]): number {
    const key = `${params.join(",")}->${results.join(",")}`;
    const found = this.#types.indexOf(key);
    if (found >= 0) return found;
    const bytes = [0x60];
    uleb(bytes, params.length);
    for (const p of params) bytes.push(VALTYPE[p]);
    uleb(bytes, results.length);
    for (const r of results) bytes.push(VALTYPE[r]);
    this.#types.push(key);
    this.#typeBytes.push(bytes);
    return this.#types.length - 1;
  }

  /** Reserves a function index (to be defined with {@link defineFunction}), for forward calls. */
  declareFunction(): number {
    this.#funcs.push(undefined);
    return this.#funcs.length - 1;
  }

  /** Defines the body of a function reserved by {@link declareFunction}. */
  defineFunction(
    index: number,
    exportName: string | undefined,
    params: readonly ValType[],
    results: readonly ValType[],
    build: (f: FunctionBuilder) => void,
  ): number {
    const body = new FunctionBuilder(params);
    build(body);
    this.#funcs[index] = { typeIndex: this.type(params, results), body };
    if (exportName !== undefined) this.#exports.push({ name: exportName, index });
    return index;
  }

  /** Adds a function (exported as `exportName` when given) and returns its index. */
  addFunction(
    exportName: string | undefined,
    params: readonly ValType[],
    results: readonly ValType[],
    build: (f: FunctionBuilder) => void,
  ): number {
    return this.defineFunction(this.declareFunction(), exportName, params, results, build);
  }

  /** The module bytes. */
  build(): Uint8Array {
    const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    // Type section.
    const types: number[] = [];
    uleb(types, this.#typeBytes.length);
    for (const t of this.#typeBytes) types.push(...t);
    section(out, 1, types);
    // Import section.
    if (this.#memory) {
      const m = this.#memory;
      const imp: number[] = [];
      uleb(imp, 1);
      name(imp, m.module ?? "env");
      name(imp, m.name ?? "memory");
      imp.push(0x02);
      const flags = (m.max !== undefined ? 1 : 0) | (m.shared ? 2 : 0);
      imp.push(flags);
      uleb(imp, m.min);
      if (m.max !== undefined) uleb(imp, m.max);
      section(out, 2, imp);
    }
    // Function section.
    const funcs: number[] = [];
    uleb(funcs, this.#funcs.length);
    this.#funcs.forEach((f, i) => {
      if (!f) throw new Error(`wasm builder: function ${i} declared but not defined`);
      uleb(funcs, f.typeIndex);
    });
    section(out, 3, funcs);
    // Export section.
    const exps: number[] = [];
    uleb(exps, this.#exports.length);
    for (const e of this.#exports) {
      name(exps, e.name);
      exps.push(0x00);
      uleb(exps, e.index);
    }
    section(out, 7, exps);
    // Code section.
    const code: number[] = [];
    uleb(code, this.#funcs.length);
    for (const f of this.#funcs) {
      const body = f!.body.encode();
      uleb(code, body.length);
      for (const b of body) code.push(b);
    }
    section(out, 10, code);
    return new Uint8Array(out);
  }
}
