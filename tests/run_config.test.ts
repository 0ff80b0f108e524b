import assert from "node:assert/strict";
import {
  ConfigError,
  configToYaml,
  defineSchema,
  describeSchema,
  loadYamlFile,
  parseSet,
  resolveConfig,
} from "../run/config.ts";
import { closest, didYouMean, levenshtein } from "../run/suggest.ts";

const schema = defineSchema({
  steps: { type: "integer", default: 100, doc: "training steps" },
  name: { type: "string", default: "run", doc: "run name" },
  verbose: { type: "boolean", default: false, doc: "chatty logs" },
  sizes: { type: "array", default: [64, 64], doc: "hidden sizes" },
  optim: {
    type: "object",
    fields: {
      name: { type: "enum", values: ["adam", "sgd"], default: "adam", doc: "optimizer" },
      lr: { type: "number", default: 1e-3, doc: "learning rate" },
    },
  },
  model: { type: "object", fields: { width: { type: "integer", default: 32, doc: "width" } } },
});

async function yamlLayer(text: string) {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(path, text);
  try {
    return await loadYamlFile(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("suggest: levenshtein and closest", () => {
  assert.equal(levenshtein("kitten", "sitting"), 3);
  assert.equal(levenshtein("", "abc"), 3);
  assert.equal(closest("trian", ["train", "eval"]), "train");
  assert.equal(closest("zzzzz", ["train", "eval"]), undefined);
  assert.equal(didYouMean("--sed", ["--seed", "--out"]), "; did you mean '--seed'?");
  assert.equal(didYouMean("xy", ["lr"]), "");
});

Deno.test("config: defaults are typed and complete", () => {
  const cfg = resolveConfig(schema, []);
  assert.deepEqual(cfg, {
    steps: 100,
    name: "run",
    verbose: false,
    sizes: [64, 64],
    optim: { name: "adam", lr: 1e-3 },
    model: { width: 32 },
  });
  const opt: "adam" | "sgd" = cfg.optim.name; // compile-time check of the typed result
  assert.equal(opt, "adam");
  assert.match(describeSchema(schema), /optim\.lr: a number = 0\.001 {2}learning rate/);
});

Deno.test("config: YAML layer then --set layers, later wins, values typed", async () => {
  const file = await yamlLayer("steps: 500\noptim:\n  lr: 0.01\n  name: sgd\nsizes: [8, 16]\n");
  const cfg = resolveConfig(schema, [
    file,
    parseSet("optim.lr=3e-4"),
    parseSet("verbose=true"),
    parseSet("name=123"), // a string field keeps the text as written
    parseSet("sizes=[1, 2, 3]"),
  ]);
  assert.equal(cfg.steps, 500);
  assert.equal(cfg.optim.name, "sgd");
  assert.equal(cfg.optim.lr, 3e-4);
  assert.equal(cfg.verbose, true);
  assert.equal(cfg.name, "123");
  assert.deepEqual(cfg.sizes, [1, 2, 3]);
  assert.equal(cfg.model.width, 32); // untouched sections keep defaults
  // The saved YAML resolves back to the same config.
  assert.deepEqual(resolveConfig(schema, [await yamlLayer(configToYaml(cfg))]), cfg);
});

Deno.test("config: unknown key names the source, suggests, lists valid keys", async () => {
  const file = await yamlLayer("model:\n  lr: 0.1\n");
  assert.throws(() => resolveConfig(schema, [{ ...file, source: "configs/gan/quick.yaml" }]), {
    name: "ConfigError",
    message: "unknown key 'model.lr' in configs/gan/quick.yaml; did you mean 'optim.lr'? " +
      "valid keys under 'model': width",
  });
  assert.throws(() => resolveConfig(schema, [parseSet("optim.lrr=1")]), {
    message: /unknown key 'optim\.lrr' in --set optim\.lrr=1; did you mean 'optim\.lr'\?/,
  });
  assert.throws(() => resolveConfig(schema, [parseSet("stpes=1")]), {
    message: /did you mean 'steps'\? valid top-level keys: steps, name, verbose, sizes, optim/,
  });
});

Deno.test("config: wrong types name the key path, expected type and value", () => {
  const cases: [string, RegExp][] = [
    ["optim.lr=abc", /'optim\.lr' in --set optim\.lr=abc: expected a number, got string "abc"/],
    ["steps=1.5", /'steps' in --set steps=1\.5: expected an integer, got number 1\.5/],
    ["verbose=2", /'verbose'.*expected a boolean, got number 2/],
    ["sizes=[1, x]", /'sizes'.*expected an array of numbers, got array \[1,"x"\]/],
    ["optim.name=adamw", /'optim\.name'.*expected one of adam\|sgd, got string "adamw"; did you/],
    ["optim=3", /'optim' in --set optim=3: expected a mapping with keys name, lr, got number 3/],
  ];
  for (const [set, message] of cases) {
    assert.throws(() => resolveConfig(schema, [parseSet(set)]), { name: "ConfigError", message });
  }
  assert.throws(() => parseSet("novalue"), ConfigError);
});

Deno.test("config: missing and unparsable files give clear errors", async () => {
  await assert.rejects(loadYamlFile("/nonexistent/x.yaml"), {
    message: "config file not found: /nonexistent/x.yaml",
  });
  await assert.rejects(yamlLayer("a: [1, 2\nb: {"), { message: /cannot parse YAML in .*\.yaml/ });
  const empty = await yamlLayer("");
  assert.deepEqual(resolveConfig(schema, [empty]), resolveConfig(schema, []));
});

Deno.test("config: out-of-range numbers name the key, the bound and the meaning", () => {
  const ranged = defineSchema({
    lr: { type: "number", gt: 0, default: 1e-3, doc: "learning rate" },
    decay: { type: "number", min: 0, max: 1, default: 0.9, doc: "EMA decay" },
    beta: { type: "number", min: 0, lt: 1, default: 0.5, doc: "Adam beta1" },
    batch: { type: "integer", min: 1, default: 8, doc: "batch size" },
    limit: { type: "integer", default: 0, doc: "items (0: all)" },
    offset: { type: "number", default: 0, doc: "any finite number" },
  });
  const bad = (expr: string) => () => resolveConfig(ranged, [parseSet(expr)]);
  assert.throws(
    bad("lr=-1"),
    /out of range: 'lr' in --set lr=-1 is -1; it must be > 0 \(learning rate\)/,
  );
  assert.throws(bad("lr=0"), /must be > 0/);
  assert.throws(bad("decay=1.5"), /'decay' .* must be in \[0, 1\] \(EMA decay\)/);
  assert.throws(bad("beta=1"), /must be in \[0, 1\) \(Adam beta1\)/);
  assert.throws(bad("batch=0"), /'batch' .* must be >= 1/);
  assert.throws(bad("limit=-3"), /'limit' .* must be >= 0/); // integers are counts by default
  assert.throws(bad("offset=.inf"), /'offset' .* must be finite/);
  assert.throws(
    () => resolveConfig(ranged, [{ source: "f.yaml", values: { lr: -2 } }]),
    /in f\.yaml/,
  );
  const ok = resolveConfig(ranged, [parseSet("decay=1"), parseSet("offset=-5")]);
  assert.equal(ok.decay, 1);
  assert.equal(ok.offset, -5);
  assert.match(describeSchema(ranged), /lr: a number > 0 = 0\.001/);
});

Deno.test("config: every shipped preset of every task is in range", async () => {
  const { loadPreset } = await import("../run/session.ts");
  const { GAN_SCHEMA } = await import("../tasks/gan/config.ts");
  const { MLP_SCHEMA, REGRESSION_SCHEMA } = await import("../tasks/l1/config.ts");
  const { NMT_SCHEMA } = await import("../tasks/nmt/config.ts");
  const { classifierSchema } = await import("../tasks/classifier/config.ts");
  const schemas = {
    gan: GAN_SCHEMA,
    regression: REGRESSION_SCHEMA,
    mlp: MLP_SCHEMA,
    nmt: NMT_SCHEMA,
    classifier: classifierSchema,
  };
  for (const [task, schema] of Object.entries(schemas)) {
    for (const preset of ["quick", "paper"]) {
      resolveConfig(schema as typeof GAN_SCHEMA, [await loadPreset(task, preset)]);
    }
  }
});
