import assert from "node:assert/strict";
import { layerViolations } from "../tools/check_layers.ts";

Deno.test("layers import only downward (tools/check_layers.ts)", async () => {
  const root = new URL("..", import.meta.url).pathname;
  const bad = await layerViolations(root);
  assert.deepEqual(bad.map((v) => `${v.from} -> ${v.to}: ${v.reason}`), []);
});
