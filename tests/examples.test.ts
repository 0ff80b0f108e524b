/** The README's example runs as written. */

import assert from "node:assert/strict";

Deno.test("examples/schedule_your_model.ts runs end to end", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../examples/schedule_your_model.ts", import.meta.url).pathname,
      "1",
    ],
    env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  assert.match(text, /episode 0: reward \d/);
  assert.match(text, /greedy controller: best validation MSE \d/);
});

Deno.test("importing mod.ts has no side effects: no permission needed, no task registered", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/import_mod.ts`;
    await Deno.writeTextFile(
      script,
      `import * as autoloss from "${new URL("../mod.ts", import.meta.url).href}";\n` +
        `import { listTasks } from "${new URL("../tasks/registry.ts", import.meta.url).href}";\n` +
        `console.log(JSON.stringify({ exports: Object.keys(autoloss).length, ` +
        `tasks: listTasks().length, hasTask: typeof autoloss.RegressionTask }));\n`,
    );
    // No --allow-* flags: reading env, files or the GPU at import time would fail.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-lock", script],
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    const r = JSON.parse(text);
    assert.ok(r.exports > 200, `${r.exports} exports`);
    assert.equal(r.tasks, 0);
    assert.equal(r.hasTask, "function");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
