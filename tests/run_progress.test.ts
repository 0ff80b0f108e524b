import assert from "node:assert/strict";
import { formatDuration, formatNumber, formatRate, Progress } from "../run/progress.ts";

function harness(tty: boolean, interval = 10) {
  let t = 0;
  const out: string[] = [];
  const p = new Progress({
    total: 100,
    label: "gan",
    tty,
    interval,
    write: (s) => out.push(s),
    now: () => t,
  });
  return { p, out, advance: (ms: number) => (t += ms) };
}

Deno.test("progress: plain mode prints at most one line per interval", () => {
  const { p, out, advance } = harness(false, 10);
  for (let step = 1; step <= 100; step++) {
    advance(250); // 4 steps/s, 25 s in all
    p.update(step, { D: 0.6931, G: 1.2 });
  }
  p.done(100, { D: 0.5 });
  assert.deepEqual(out, [
    "gan 1/100 (1.0%) 4.00 steps/s ETA 0:25 D=0.6931 G=1.2\n",
    "gan 41/100 (41.0%) 4.00 steps/s ETA 0:15 D=0.6931 G=1.2\n",
    "gan 81/100 (81.0%) 4.00 steps/s ETA 0:05 D=0.6931 G=1.2\n",
    "gan 100/100 (100.0%) 4.00 steps/s ETA 0:00 D=0.5\n",
  ]);
});

Deno.test("progress: tty mode redraws one line with \\r and ends it", () => {
  const { p, out, advance } = harness(true);
  advance(1000);
  p.update(50, { IS: 3.4 });
  advance(10);
  p.update(51); // within 100 ms of the last draw: skipped
  p.done();
  assert.equal(out.length, 3);
  assert.equal(out[0], "\rgan [##########..........] 50/100 50.0% 50.0 it/s ETA 0:01 IS=3.4\x1b[K");
  assert.ok(out[1].startsWith("\rgan [####################] 100/100"));
  assert.equal(out[2], "\n");
});

Deno.test("progress: string values are shown as given", () => {
  const { p, out } = harness(false);
  p.update(1, { D: 0.69314, IS: "-" });
  assert.equal(out[0], "gan 1/100 (1.0%) 0.00 steps/s ETA ? D=0.6931 IS=-\n");
});

Deno.test("progress: formatting helpers", () => {
  assert.equal(formatDuration(3725), "1:02:05");
  assert.equal(formatDuration(65), "1:05");
  assert.equal(formatDuration(Infinity), "?");
  assert.equal(formatNumber(0.123456), "0.1235");
  assert.equal(formatNumber(42), "42");
  assert.equal(formatNumber(NaN), "NaN");
});

Deno.test("progress: slow rates read as seconds per unit", () => {
  assert.equal(formatRate(4, "steps"), "4.00 steps/s");
  assert.equal(formatRate(0.0175, "rounds"), "57.1 s/round");
  assert.equal(formatRate(0, "rounds"), "0.00 rounds/s");
});
