import { ConfigError, loadConfig } from "./config.js";
import { createGateway } from "./gateway.js";

// Entry point: `npm run gateway` (tsx) or `node gateway/dist/main.js` (the image). SIGTERM/SIGINT stop it
// cleanly: no new requests, in-flight sends recorded, database closed.

const SHUTDOWN_DEADLINE_MS = 20_000;

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`wagate: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const gateway = await createGateway(config);
  const address = await gateway.start();
  gateway.app.log.info({ address, transport: config.WHATSAPP_TRANSPORT }, "wagate gateway listening");

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    gateway.app.log.info({ signal }, "stopping");
    const deadline = setTimeout(() => {
      gateway.outbox.abort();
      gateway.app.log.error("shutdown deadline passed; in-flight sends are left in doubt");
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    gateway.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        gateway.app.log.error({ err: error }, "error while stopping");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`wagate: failed to start: ${message.split("\n")[0]}\n`);
  process.exit(1);
});
