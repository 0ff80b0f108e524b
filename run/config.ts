/**
 * Typed config schemas: defaults, then YAML file(s), then `--set key=value` overrides, each layer
 * checked against the schema. Errors name the full key path, the source, the expected type and
 * the value received, and suggest the closest valid key.
 *
 * ```ts
 * const schema = defineSchema({
 *   steps: { type: "integer", default: 1000, doc: "training steps" },
 *   optim: { type: "object", fields: {
 *     name: { type: "enum", values: ["adam", "sgd"], default: "adam", doc: "optimizer" },
 *     lr: { type: "number", default: 1e-3, doc: "learning rate" },
 *   } },
 * });
 * const cfg = resolveConfig(schema, [await loadYamlFile("quick.yaml"), parseSet("optim.lr=0.01")]);
 * cfg.optim.name; // typed "adam" | "sgd"
 * ```
 * @module
 */

// Full specifiers are the project rule for library files (no import map needed by users).
import { UserError } from "../util/errors.ts";
import { parse, stringify } from "npm:yaml@2.9.1";
import { closest, didYouMean, levenshtein } from "./suggest.ts";

/** One field of a schema: a typed leaf with a default and a doc string, or a nested section. */
export type Field =
  | {
    readonly type: "number" | "integer";
    readonly default: number;
    readonly doc: string;
  } & Range
  | { readonly type: "string"; readonly default: string; readonly doc: string }
  | { readonly type: "boolean"; readonly default: boolean; readonly doc: string }
  | {
    readonly type: "enum";
    readonly values: readonly string[];
    readonly default: string;
    readonly doc: string;
  }
  | { readonly type: "array"; readonly default: readonly number[]; readonly doc: string }
  | { readonly type: "object"; readonly fields: Schema; readonly doc?: string };

/**
 * The allowed values of a number or integer field: `min`/`max` inclusive, `gt`/`lt` exclusive.
 * Without any bound a number must be finite and an integer must be >= 0 (counts, sizes, seeds);
 * `min: -Infinity` lifts that.
 */
export interface Range {
  /** Smallest allowed value. */
  readonly min?: number;
  /** Largest allowed value. */
  readonly max?: number;
  /** Values must be greater than this. */
  readonly gt?: number;
  /** Values must be less than this. */
  readonly lt?: number;
}

/** The bounds of a number field as text, e.g. "> 0", "in [0, 1)", or "" when unbounded. */
export function describeRange(f: Range & { type: string }): string {
  const min = f.min ?? (f.type === "integer" && f.gt === undefined ? 0 : undefined);
  const lo = f.gt !== undefined
    ? `(${f.gt}`
    : min !== undefined && min > -Infinity
    ? `[${min}`
    : "";
  const hi = f.lt !== undefined ? `${f.lt})` : f.max !== undefined ? `${f.max}]` : "";
  if (lo && hi) return `in ${lo}, ${hi}`;
  if (lo) return `${lo[0] === "(" ? ">" : ">="} ${lo.slice(1)}`;
  if (hi) return `${hi.endsWith(")") ? "<" : "<="} ${hi.slice(0, -1)}`;
  return "";
}

function inRange(f: Range & { type: string }, x: number): boolean {
  if (!Number.isFinite(x)) return false;
  const min = f.min ?? (f.type === "integer" && f.gt === undefined ? 0 : -Infinity);
  return x >= min && x <= (f.max ?? Infinity) && x > (f.gt ?? -Infinity) &&
    x < (f.lt ?? Infinity);
}

/** A config schema: field names to fields. */
export type Schema = { readonly [key: string]: Field };

/** The TypeScript type of a resolved config for schema `S`. */
export type ConfigOf<S extends Schema> = { -readonly [K in keyof S]: ValueOf<S[K]> };

/** The TypeScript type of one field's value. */
export type ValueOf<F extends Field> = F extends { type: "object"; fields: infer S extends Schema }
  ? ConfigOf<S>
  : F extends { type: "enum"; values: readonly (infer V)[] } ? V
  : F extends { type: "number" | "integer" } ? number
  : F extends { type: "string" } ? string
  : F extends { type: "boolean" } ? boolean
  : number[];

/** One layer of values and where it came from (a file path, `--set ...`), for error messages. */
export interface Layer {
  /** Where the values came from, e.g. "configs/gan/quick.yaml". */
  source: string;
  /** Parsed values: a nested mapping, or null/undefined for an empty layer. */
  values: unknown;
}

/** A config error meant for the user (bad key, bad type, missing or unparsable file). */
export class ConfigError extends UserError {
  /** Creates the error; `message` is shown to the user as is. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Returns `schema` unchanged, with literal types kept so that enum values are typed. */
export function defineSchema<const S extends Schema>(schema: S): S {
  return schema;
}

/** A `--set` value: its text is used for string fields, its YAML parse for the others. */
class SetValue {
  constructor(readonly text: string, readonly parsed: unknown) {}
}

/** The default values of a schema, as a nested object. */
export function defaultsOf<S extends Schema>(schema: S): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(schema)) {
    out[k] = f.type === "object"
      ? defaultsOf(f.fields)
      : f.type === "array"
      ? [...f.default]
      : f.default;
  }
  return out as ConfigOf<S>;
}

/** Every dotted key path of a schema, sections included. */
export function keyPaths(schema: Schema, prefix = ""): string[] {
  return Object.entries(schema).flatMap(([k, f]) => {
    const path = prefix + k;
    return f.type === "object" ? [path, ...keyPaths(f.fields, path + ".")] : [path];
  });
}

const lastPart = (p: string) => p.slice(p.lastIndexOf(".") + 1);
/** Key distance: a misplaced key ('model.lr' for 'optim.lr') counts as close. */
const keyDistance = (a: string, b: string) =>
  Math.min(levenshtein(a, b), levenshtein(lastPart(a), lastPart(b)) + 1);

function show(value: unknown): string {
  if (value instanceof SetValue) return show(value.parsed);
  if (value === null || value === undefined) return String(value);
  const text = JSON.stringify(value) ?? String(value);
  const kind = Array.isArray(value) ? "array" : typeof value;
  return `${kind} ${text.length > 60 ? text.slice(0, 57) + "..." : text}`;
}

function expected(f: Field): string {
  if (f.type === "enum") return `one of ${f.values.join("|")}`;
  if (f.type === "array") return "an array of numbers";
  if (f.type === "object") return `a mapping with keys ${Object.keys(f.fields).join(", ")}`;
  return `${f.type === "integer" ? "an" : "a"} ${f.type}`;
}

function checkLeaf(
  f: Exclude<Field, { type: "object" }>,
  v: unknown,
  path: string,
  source: string,
) {
  const value = v instanceof SetValue
    ? (f.type === "string" || f.type === "enum" ? v.text : v.parsed)
    : v;
  const isNum = (x: unknown) => typeof x === "number" && !Number.isNaN(x);
  const ok = f.type === "number"
    ? isNum(value)
    : f.type === "integer"
    ? Number.isInteger(value)
    : f.type === "enum"
    ? f.values.includes(value as string)
    : f.type === "array"
    ? Array.isArray(value) && value.every(isNum)
    : f.type === "string"
    ? typeof value === "string"
    : typeof value === "boolean";
  if (ok && (f.type === "number" || f.type === "integer") && !inRange(f, value as number)) {
    const range = describeRange(f) || "finite";
    throw new ConfigError(
      `out of range: '${path}' in ${source} is ${value}; it must be ${range} (${f.doc})`,
    );
  }
  if (ok) return Array.isArray(value) ? [...value] : value;
  const hint = f.type === "enum" && typeof value === "string" ? didYouMean(value, f.values) : "";
  throw new ConfigError(
    `wrong type for '${path}' in ${source}: expected ${expected(f)}, got ${show(value)}${hint}`,
  );
}

/**
 * Resolves a config: the schema defaults, then each layer in order (later layers win). Arrays are
 * replaced, not merged. Throws {@link ConfigError} on unknown keys and wrong types.
 */
export function resolveConfig<S extends Schema>(schema: S, layers: readonly Layer[]): ConfigOf<S> {
  const cfg: Record<string, unknown> = {};
  const merge = (
    sch: Schema,
    target: Record<string, unknown>,
    values: unknown,
    src: string,
    at: string,
  ) => {
    if (values === null || values === undefined) return; // an empty file or section
    if (typeof values !== "object" || Array.isArray(values)) {
      const what = at ? `'${at.slice(0, -1)}'` : "the top level";
      throw new ConfigError(
        `wrong type for ${what} in ${src}: expected a mapping with keys ` +
          `${Object.keys(sch).join(", ")}, got ${show(values)}`,
      );
    }
    for (const [key, v] of Object.entries(values)) {
      const path = at + key;
      const f = Object.hasOwn(sch, key) ? sch[key] : undefined;
      if (!f) {
        const near = closest(path, keyPaths(schema), undefined, keyDistance);
        const under = at ? `valid keys under '${at.slice(0, -1)}'` : "valid top-level keys";
        throw new ConfigError(
          `unknown key '${path}' in ${src}${near ? `; did you mean '${near}'?` : ";"} ` +
            `${under}: ${Object.keys(sch).join(", ")}`,
        );
      }
      if (f.type === "object") {
        const sub = (target[key] ??= {}) as Record<string, unknown>;
        merge(f.fields, sub, v instanceof SetValue ? v.parsed : v, src, path + ".");
      } else target[key] = checkLeaf(f, v, path, src);
    }
  };
  merge(schema, cfg, defaultsOf(schema), "the schema defaults", "");
  for (const layer of layers) merge(schema, cfg, layer.values, layer.source, "");
  return cfg as ConfigOf<S>;
}

/** Reads a YAML config file as a layer; a missing or unparsable file gives a clear error. */
export async function loadYamlFile(path: string): Promise<Layer> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new ConfigError(`config file not found: ${path}`);
    }
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    return { source: path, values: parse(text) };
  } catch (err) {
    throw new ConfigError(`cannot parse YAML in ${path}: ${(err as Error).message}`);
  }
}

/**
 * Turns one `--set key.path=value` into a layer. The value is parsed as YAML (`0.01`, `true`,
 * `[1, 2]`), except that string and enum fields take the text as written.
 */
export function parseSet(expr: string): Layer {
  const eq = expr.indexOf("=");
  if (eq <= 0) {
    throw new ConfigError(`bad --set '${expr}': expected key=value, e.g. --set optim.lr=0.001`);
  }
  const text = expr.slice(eq + 1);
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch {
    parsed = text;
  }
  const parts = expr.slice(0, eq).trim().split(".");
  const values: Record<string, unknown> = {};
  let node = values;
  for (const p of parts.slice(0, -1)) node = (node[p] = {}) as Record<string, unknown>;
  node[parts[parts.length - 1]] = new SetValue(text, parsed);
  return { source: `--set ${expr}`, values };
}

/** Serializes a resolved config as YAML (for `config.yaml` in a run directory). */
export function configToYaml(cfg: unknown): string {
  return stringify(cfg);
}

function rangeNote(f: Field): string {
  if (f.type !== "number" && f.type !== "integer") return "";
  const r = describeRange(f);
  return r ? ` ${r}` : "";
}

/** One line per leaf key: path, type, range, default and doc; for `--help` and error messages. */
export function describeSchema(schema: Schema, prefix = ""): string {
  return Object.entries(schema).map(([k, f]) =>
    f.type === "object"
      ? describeSchema(f.fields, `${prefix}${k}.`)
      : `  ${prefix}${k}: ${expected(f)}${rangeNote(f)} = ${JSON.stringify(f.default)}  ${f.doc}`
  ).join("\n");
}
