import { randomBytes } from "node:crypto";

// Prints a new 32-byte secret as hex, for API_SECRET. Nothing is stored or logged.
process.stdout.write(`${randomBytes(32).toString("hex")}\n`);
