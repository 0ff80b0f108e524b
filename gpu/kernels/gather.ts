/**
 * Host side of index kernels: row gather / scatter-add (embeddings) and per-row pick / unpick
 * (cross-entropy over class indices).
 * @module
 */

import type { Backend } from "../backend.ts";
import { foldGrid, WG } from "../shaders/common.ts";
import {
  gatherRowsShader,
  pickShader,
  scatterAddRowsShader,
  unpickShader,
} from "../shaders/gather.ts";
import { bind, type BufferRef } from "./buffer_ref.ts";

function launch(
  be: Backend,
  name: string,
  threads: number,
  code: (nx: number) => string,
  refs: [BufferRef, BufferRef, BufferRef],
): void {
  if (threads === 0) return;
  const { grid, nx } = foldGrid(Math.ceil(threads / WG));
  be.run({ code: code(nx), name }, [
    bind(refs[0], "read"),
    bind(refs[1], "read"),
    bind(refs[2], "read_write"),
  ], grid);
}

/** out[i, :] = table[idx[i], :] for table [rows, dim], idx [n]. */
export function runGatherRows(
  be: Backend,
  table: BufferRef,
  idx: BufferRef,
  out: BufferRef,
  rows: number,
  dim: number,
  n: number,
): void {
  launch(be, "gather_rows", n * dim, (nx) => gatherRowsShader(rows, dim, n, nx), [table, idx, out]);
}

/** table[idx[i], :] += src[i, :] (table must be zero-initialised or hold an accumulator). */
export function runScatterAddRows(
  be: Backend,
  src: BufferRef,
  idx: BufferRef,
  table: BufferRef,
  rows: number,
  dim: number,
  n: number,
): void {
  launch(be, "scatter_add_rows", n * dim, (nx) => scatterAddRowsShader(rows, dim, n, nx), [
    src,
    idx,
    table,
  ]);
}

/** out[r] = x[r, idx[r]] for x [rows, k]. */
export function runPick(
  be: Backend,
  x: BufferRef,
  idx: BufferRef,
  out: BufferRef,
  rows: number,
  k: number,
): void {
  launch(be, "pick", rows, (nx) => pickShader(rows, k, nx), [x, idx, out]);
}

/** out[r, c] = c == idx[r] ? g[r] : 0. */
export function runUnpick(
  be: Backend,
  g: BufferRef,
  idx: BufferRef,
  out: BufferRef,
  rows: number,
  k: number,
): void {
  launch(be, "unpick", rows * k, (nx) => unpickShader(rows, k, nx), [g, idx, out]);
}
