import { processIo, runAdmin } from "./cli.js";

// Entry point of the operator CLI in the image: `wagate <command>` (a link to node gateway/dist/admin/main.js).
process.exitCode = await runAdmin(process.argv.slice(2), processIo);
