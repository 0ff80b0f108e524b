import assert from "node:assert/strict";
import { atomicWrite } from "../util/atomic.ts";

const list = async (dir: string) => (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);

Deno.test("atomic: a successful write replaces the file and leaves no temp file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/state.json`;
  await atomicWrite(path, "old");
  await atomicWrite(path, new TextEncoder().encode("new"));
  assert.equal(await Deno.readTextFile(path), "new");
  assert.deepEqual(await list(dir), ["state.json"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("atomic: a write interrupted before the rename leaves the old file intact", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/state.json`;
  await atomicWrite(path, "old");
  const deno = Deno as unknown as { rename: typeof Deno.rename };
  const rename = deno.rename;
  deno.rename = () => Promise.reject(new Error("simulated crash"));
  try {
    await assert.rejects(atomicWrite(path, "new ".repeat(100000)), /simulated crash/);
  } finally {
    deno.rename = rename;
  }
  assert.equal(await Deno.readTextFile(path), "old");
  assert.deepEqual(await list(dir), ["state.json"]); // the temp file was cleaned up
  await Deno.remove(dir, { recursive: true });
});

Deno.test("atomic: a stale temp file from a killed writer does not affect the target", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/state.json`;
  await atomicWrite(path, '{"step": 1}');
  // What a process killed mid-write leaves: a half-written temp file beside the target.
  await Deno.writeTextFile(`${path}.999.deadbeef.tmp`, '{"step": 2, "wei');
  assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), { step: 1 });
  await atomicWrite(path, '{"step": 3}');
  assert.deepEqual(JSON.parse(await Deno.readTextFile(path)), { step: 3 });
  assert.deepEqual((await list(dir)).sort(), ["state.json", "state.json.999.deadbeef.tmp"]);
  await Deno.remove(dir, { recursive: true });
});
