/**
 * Errors meant for the person at the terminal. The CLI prints their message (which names the
 * problem and the fix) without a stack trace; any other error is a bug and keeps its stack.
 *
 * This is the bottom layer (util/), so every layer may extend {@link UserError}; gpu/'s own errors
 * mark themselves with a `userFacing: true` property instead, which {@link userMessage} accepts too.
 * @module
 */

/** An error about the user's input or machine (a flag, a file, a dataset, a permission). */
export class UserError extends Error {
  /** Marks the error as meant for the user (see {@link userMessage}). */
  readonly userFacing = true;

  /** Creates the error; `message` is shown to the user as is. */
  constructor(message: string) {
    super(message);
    this.name = "UserError";
  }
}

/**
 * The message to show for an error meant for the user, or null for a bug (rethrow it):
 * errors with `userFacing: true`, and Deno's permission errors (with the way to grant them).
 */
export function userMessage(err: unknown): string | null {
  if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
    return `${err.message}\nRun with -A, or with the narrow flags of the deno.json tasks ` +
      "(see README.md, Permissions).";
  }
  if (err instanceof Error && (err as { userFacing?: unknown }).userFacing === true) {
    return err.message;
  }
  return null;
}
