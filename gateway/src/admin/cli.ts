import { linkCommand } from "../cli/link.js";
import { backupCommand } from "./backup.js";
import { type AdminCommand, type AdminIo, UsageError } from "./command.js";
import { revokeCommand } from "./revoke.js";
import { statusCommand } from "./status.js";
import { tokenCommand } from "./token.js";

// The operator CLI: `wagate <command>`. The image ships it (`wagate` on the PATH: node gateway/dist/admin/main.js);
// on the VM `sudo wagate <command>` runs it inside the gateway's container, with the gateway's environment and
// database (infra/render/admin-cli.ts). `npm run token` and `npm run revoke` run the same commands from a checkout.

/** `wagate link <number>`: the QR code (or pairing code) in the terminal of the gateway's host (cli/link.ts). */
const linkAdminCommand: AdminCommand = {
  name: "link",
  summary: "link a WhatsApp Web number: prints its QR code (or a pairing code) and waits for the phone",
  usage: "link <number id or name> [--code <E.164 phone>]",
  run: (args, io) => linkCommand(args, io.env, io),
};

export const ADMIN_COMMANDS: readonly AdminCommand[] = [
  tokenCommand,
  revokeCommand,
  statusCommand,
  backupCommand,
  linkAdminCommand,
];

export function adminUsage(): string {
  const width = Math.max(...ADMIN_COMMANDS.map((c) => c.name.length));
  return `usage: wagate <command> [options]
${ADMIN_COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}
${ADMIN_COMMANDS.map((c) => `\n  wagate ${c.usage}`).join("")}
`;
}

/** Runs one command; never throws: errors become one line on stderr and an exit code (1, or 2 for usage). */
export async function runAdmin(argv: readonly string[], io: AdminIo): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    io.out(adminUsage());
    return name === undefined ? 2 : 0;
  }
  const command = ADMIN_COMMANDS.find((c) => c.name === name);
  if (!command) {
    io.err(`wagate: unknown command ${name}\n${adminUsage()}`);
    return 2;
  }
  if (args.includes("--help") || args.includes("-h")) {
    io.out(`usage: wagate ${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(args, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`wagate ${name}: ${error.message}\nusage: wagate ${command.usage}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.err(`wagate ${name}: ${message.split("\n")[0]}\n`);
    // An AdminError is a refusal the operator can act on; anything else is a failure: both exit 1.
    return 1;
  }
}

export const processIo: AdminIo = {
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};
