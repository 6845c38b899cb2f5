import { randomBytes } from "node:crypto";
import { loadConfig } from "../../src/config.js";
import { createGateway } from "../../src/gateway.js";
import { uuidv7 } from "../../src/ids.js";

// Run by store-sync.test.ts under strace: opens the store the way the gateway does for DATABASE_SYNC=<argv[3]>
// (through loadConfig and createGateway), awaits <argv[4]> writes one after the other, then exits without
// closing (a close checkpoints and syncs, which would blur the count).

const [path, sync, count] = process.argv.slice(2);
const config = loadConfig({
  API_SECRET: randomBytes(32).toString("hex"),
  DATABASE_PATH: path as string,
  DATABASE_SYNC: sync as string,
  WHATSAPP_TRANSPORT: "sandbox",
  SANDBOX_OUTBOX_PATH: `${path}.outbox.jsonl`,
  LOG_LEVEL: "error",
});
const gateway = await createGateway(config, { logger: false });
for (let i = 0; i < Number(count); i++) {
  await gateway.store.enqueueMessage({
    id: uuidv7(),
    subject: "s",
    kind: "text",
    message: { type: "text", to: "+14155550123", text: { body: "x" } },
    priority: 0,
    createdAt: Date.now(),
  });
}
process.stdout.write("written\n");
process.exit(0);
