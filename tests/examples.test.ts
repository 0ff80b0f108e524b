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
