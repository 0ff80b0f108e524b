/**
 * `Module`: named parameters, buffers (state that is saved but not trained, such as batch-norm
 * running statistics), child modules, train/eval mode; and `FlatParams`: a model's
 * parameters and gradients packed into one flat GPU buffer each, with named parameter groups
 * (`G`, `D`, `encoder`, ...) as element ranges. An optimizer step, a group's gradient norm or the
 * L1 norm of all parameters is then one kernel over a range, not one per tensor.
 * @module
 */

import { backend, OFFSET_ALIGN } from "../gpu/backend.ts";
import { fill_ } from "../tensor/ops.ts";
import { keep, markZero, Tensor } from "../tensor/tensor.ts";

/** Base class of layers and models. Subclasses register parameters and children in the constructor. */
export class Module {
  /** True in training mode (dropout active, batch norm uses batch statistics). */
  training = true;
  #params = new Map<string, Tensor>();
  #buffers = new Map<string, Tensor>();
  #children = new Map<string, Module>();

  #checkFree(name: string): void {
    if (this.#params.has(name) || this.#buffers.has(name) || this.#children.has(name)) {
      throw new Error(`${this.constructor.name}: '${name}' is already registered`);
    }
  }

  /** Registers a parameter (a leaf that requires grad) under `name`; returns it. */
  protected param(name: string, t: Tensor): Tensor {
    this.#checkFree(name);
    t.requiresGrad = true;
    t.name = name;
    keep(t);
    this.#params.set(name, t);
    return t;
  }

  /**
   * Registers a buffer under `name`: state that is saved with the module but not trained (no
   * gradient, not in {@link Module.parameters}), such as batch-norm running statistics. Returns it.
   */
  protected buffer(name: string, t: Tensor): Tensor {
    this.#checkFree(name);
    t.name = name;
    keep(t);
    this.#buffers.set(name, t);
    return t;
  }

  /** Registers a child module under `name`; returns it. */
  protected child<M extends Module>(name: string, m: M): M {
    this.#checkFree(name);
    this.#children.set(name, m);
    return m;
  }

  /** Child modules by name. */
  children(): [string, Module][] {
    return [...this.#children];
  }

  /** All parameters with dotted names (`encoder.0.weight`), in registration order. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#params) out.push([prefix + n, t]);
    for (const [n, c] of this.#children) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** All buffers with dotted names (`bn.runningMean`), in registration order. */
  namedBuffers(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.#buffers) out.push([prefix + n, t]);
    for (const [n, c] of this.#children) out.push(...c.namedBuffers(`${prefix}${n}.`));
    return out;
  }

  /** All parameters, in registration order. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Sets training mode on this module and its children. */
  train(on = true): this {
    this.training = on;
    for (const [, c] of this.#children) c.train(on);
    return this;
  }

  /** Sets evaluation mode (same as `train(false)`). */
  eval(): this {
    return this.train(false);
  }

  /** Total number of parameter elements. */
  numParameters(): number {
    return this.parameters().reduce((a, t) => a + t.size, 0);
  }

  /** Disposes every parameter (and its gradient) and every buffer. */
  dispose(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.dispose();
    }
    for (const [, t] of this.namedBuffers()) t.dispose();
  }
}

/** An element range [start, end) of a flat buffer. */
export interface Range {
  /** First element. */
  start: number;
  /** One past the last element. */
  end: number;
}

/** Elements per alignment slot: parameter views start at 256-byte boundaries. */
const ALIGN_ELEMS = OFFSET_ALIGN / 4;

/**
 * A model's parameters packed into one flat buffer (`data`) and their gradients into another
 * (`grad`), each parameter a view at an aligned offset. Parameter groups map to element ranges;
 * parameters are laid out group by group so each group is one contiguous range.
 */
export class FlatParams {
  /** All parameters, as one flat tensor (padding between parameters is kept at zero). */
  readonly data: Tensor;
  /** All gradients, as one flat tensor (zeroed by {@link FlatParams.zeroGrad}). */
  readonly grad: Tensor;
  /** Parameter names in layout order. */
  readonly names: string[];
  /** Each parameter's element range in the flat buffers. */
  readonly ranges: Map<string, Range>;
  /** Each group's element range. `all` covers everything. */
  readonly groups: Map<string, Range>;
  /** The parameter tensors (now views into `data`). */
  readonly params: Tensor[];

  /**
   * Packs `named` parameters. `groups` maps a group name to the parameter-name prefixes it holds
   * (e.g. `{ G: ["gen."], D: ["disc."] }`); every parameter must fall in exactly one group when
   * groups are given. Parameters keep their values; their old storage is released.
   */
  constructor(named: [string, Tensor][], groups: Record<string, string[]> = {}) {
    const groupNames = Object.keys(groups);
    const groupOf = (name: string): string => {
      const hits = groupNames.filter((g) => groups[g].some((p) => name.startsWith(p)));
      if (groupNames.length && hits.length !== 1) {
        throw new Error(
          `FlatParams: parameter '${name}' matches ${hits.length} groups (${
            hits.join(", ") || "none"
          }); ` +
            `each parameter must be in exactly one of: ${groupNames.join(", ")}`,
        );
      }
      return hits[0] ?? "all";
    };
    const order = groupNames.length
      ? groupNames.flatMap((g) => named.filter(([n]) => groupOf(n) === g))
      : named;
    this.ranges = new Map();
    this.groups = new Map();
    let at = 0;
    for (const [n, t] of order) {
      const start = at;
      this.ranges.set(n, { start, end: start + t.size });
      at = start + Math.ceil(t.size / ALIGN_ELEMS) * ALIGN_ELEMS;
      const g = groupNames.length ? groupOf(n) : "all";
      const r = this.groups.get(g);
      if (r) r.end = at;
      else this.groups.set(g, { start, end: at });
    }
    const total = Math.max(at, ALIGN_ELEMS);
    this.groups.set("all", { start: 0, end: total });
    this.names = order.map(([n]) => n);
    this.params = order.map(([, t]) => t);
    const be = backend();
    this.data = keep(fill_(new Tensor(be.alloc(total * 4), [total], "f32", 0, "FlatParams"), 0));
    this.grad = keep(fill_(new Tensor(be.alloc(total * 4), [total], "f32", 0, "FlatParams"), 0));
    const dataStorage = this.data.storageFor("FlatParams");
    const gradStorage = this.grad.storageFor("FlatParams");
    for (const [n, t] of order) {
      const { start } = this.ranges.get(n)!;
      be.copy(t.storageFor("FlatParams"), t.offset, dataStorage, start * 4, t.size * 4);
      be.retain(dataStorage);
      t.rebind(dataStorage, start * 4);
      be.retain(gradStorage);
      t.grad?.dispose();
      t.grad = keep(new Tensor(gradStorage, t.shape, "f32", start * 4, "grad"));
    }
  }

  /** The range of a group (throws with the valid names when unknown). */
  group(name: string): Range {
    const r = this.groups.get(name);
    if (!r) {
      throw new Error(
        `unknown parameter group '${name}'; groups: ${[...this.groups.keys()].join(", ")}`,
      );
    }
    return r;
  }

  /**
   * A leaf tensor viewing `range` (or a group) of `data` whose gradient accumulates into the same
   * range of `grad`, so a penalty over many parameters (an L1 norm) is one kernel over the range
   * instead of one per parameter. The view and its gradient view are created in the current
   * `tidy` scope (no GPU memory is allocated). `range.start` must be 256-byte aligned, as group
   * and parameter ranges are.
   */
  leaf(range: Range | string): Tensor {
    const r = typeof range === "string" ? this.group(range) : range;
    if (r.start % ALIGN_ELEMS !== 0 || r.start < 0 || r.end > this.size || r.end < r.start) {
      throw new Error(
        `FlatParams.leaf: range [${r.start}, ${r.end}) must lie in [0, ${this.size}) and start at ` +
          `a multiple of ${ALIGN_ELEMS} elements`,
      );
    }
    const be = backend();
    const view = (t: Tensor, what: string) => {
      const s = t.storageFor(what);
      be.retain(s);
      return new Tensor(s, [r.end - r.start], "f32", r.start * 4, what);
    };
    const t = view(this.data, "FlatParams.leaf");
    t.requiresGrad = true;
    t.grad = view(this.grad, "FlatParams.leaf grad");
    return t;
  }

  /** Total elements in the flat buffers (including alignment padding). */
  get size(): number {
    return this.data.size;
  }

  /** Zeroes the gradients (one kernel). */
  zeroGrad(): void {
    fill_(this.grad, 0);
    markZero(this.grad);
  }

  /** Releases the flat buffers and the parameter views. */
  dispose(): void {
    for (const t of this.params) {
      t.grad?.dispose();
      t.dispose();
    }
    this.data.dispose();
    this.grad.dispose();
  }
}
