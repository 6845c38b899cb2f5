// libsignal, which Baileys uses for its end-to-end encryption, prints to the console itself — among others
// `console.info("Closing session:", session)`, where `session` holds the ratchet's root and chain keys. Whatever
// reaches stdout ends in the gateway's logs (the journal on the VM). Once Baileys is loaded, console calls keep
// only their plain strings (short ones, on stderr) and drop every object, Buffer or error they were given.

const METHODS = ["log", "info", "warn", "error", "debug", "trace"] as const;
const MAX_LENGTH = 300;

/** The line a console call may print, or undefined when it carried anything but plain strings. */
export function guardedConsoleLine(args: readonly unknown[]): string | undefined {
  if (args.length === 0 || !args.every((a) => typeof a === "string")) return undefined;
  const text = (args as string[]).join(" ").replace(/\s+/g, " ").trim();
  if (text.length === 0) return undefined;
  return `wagate: web: ${text.slice(0, MAX_LENGTH)}\n`;
}

let installed = false;

export function installConsoleGuard(
  write: (line: string) => void = (line) => process.stderr.write(line),
): void {
  if (installed) return;
  installed = true;
  for (const method of METHODS) {
    console[method] = (...args: unknown[]) => {
      const line = guardedConsoleLine(args);
      if (line) write(line);
    };
  }
}
