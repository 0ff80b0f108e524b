import assert from "node:assert/strict";
import { linePlot, niceTicks } from "../run/svg.ts";

/** Checks that tags balance (a rough well-formedness test). */
function assertBalanced(svg: string) {
  const stack: string[] = [];
  for (const [, close, name, self] of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (self) continue;
    if (close) assert.equal(stack.pop(), name);
    else stack.push(name);
  }
  assert.deepEqual(stack, []);
}

Deno.test("svg: series, legend, title, axes; non-finite points skipped", () => {
  const x = [0, 1, 2, 3, 4];
  const svg = linePlot([
    { name: "D loss", x, y: [1, 0.8, NaN, 0.5, 0.4] },
    { name: "G <loss>", x, y: [2, Infinity, 1.5, 1.2, 1] },
    { name: "empty", x: [0], y: [NaN] },
  ], { title: "GAN & co", xLabel: "step", yLabel: "loss" });
  assert.ok(svg.startsWith("<svg xmlns="));
  assertBalanced(svg);
  const paths = [...svg.matchAll(/<path class="series"[^>]* d="([^"]*)"/g)].map((m) => m[1]);
  assert.equal(paths.length, 3);
  assert.equal(paths[0].match(/[ML]/g)!.join(""), "MLML"); // the NaN breaks the line
  assert.equal(paths[1].match(/[ML]/g)!.join(""), "MMLL");
  assert.equal(paths[2], "");
  assert.ok(!svg.includes("NaN") && !svg.includes("Infinity"));
  assert.ok(svg.includes("GAN &#38; co") && svg.includes("G &#60;loss&#62;"));
  assert.equal([...svg.matchAll(/<g class="legend"/g)].length, 1);
});

Deno.test("svg: log-y uses decade ticks and drops y <= 0", () => {
  const svg = linePlot([{ name: "lr", x: [0, 1, 2, 3], y: [1e-4, 1e-3, 0, 1e-1] }], {
    logY: true,
  });
  assertBalanced(svg);
  for (const label of ["1e-4", "0.001", "0.01", "0.1"]) assert.ok(svg.includes(`>${label}<`));
  const d = /<path class="series"[^>]* d="([^"]*)"/.exec(svg)![1];
  assert.equal(d.match(/[ML]/g)!.join(""), "MLM");
});

Deno.test("svg: nice ticks", () => {
  assert.deepEqual(niceTicks(0, 10), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(0.05, 0.31), [0.1, 0.2, 0.3]);
});
