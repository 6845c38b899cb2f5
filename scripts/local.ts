import { parseArgs } from "node:util";
import { z } from "zod";
import { ensureLocalPackages, type LocalStack, startLocalStack } from "./lib/local-stack.js";

// `npm run local [-- --http-port 8080 --https-port 8443 --allow-webhook-host 127.0.0.1 --allow-webhook-http]`:
// the whole hardened stack on this machine, offline, in the foreground. Ctrl-C or SIGTERM stops every process
// it started. The webhook options let the gateway deliver outbound webhooks to a receiver on this machine.

const port = z.coerce.number().int().min(1).max(65_535);

/** `--allow-webhook-host a,b --allow-webhook-host c`: names or addresses, as WEBHOOK_ALLOWED_HOSTS takes them. */
function parseAllowedHosts(values: string[]): string[] {
  const hosts = values.flatMap((v) => v.split(",")).map((h) => h.trim());
  for (const host of hosts) {
    if (!/^[A-Za-z0-9.:[\]-]+$/.test(host))
      throw new Error(`--allow-webhook-host takes host names or addresses, got ${JSON.stringify(host)}`);
  }
  return hosts;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "http-port": { type: "string", default: "8080" },
      "https-port": { type: "string", default: "8443" },
      dir: { type: "string" },
      "allow-webhook-host": { type: "string", multiple: true },
      "allow-webhook-http": { type: "boolean", default: false },
    },
    strict: true,
  });
  const webhookAllowedHosts = parseAllowedHosts(values["allow-webhook-host"] ?? []);
  const parsedHttp = port.safeParse(values["http-port"]);
  const parsedHttps = port.safeParse(values["https-port"]);
  if (!parsedHttp.success) throw new Error(`--http-port must be a port number, got ${values["http-port"]}`);
  if (!parsedHttps.success)
    throw new Error(`--https-port must be a port number, got ${values["https-port"]}`);
  const log = (line: string) => process.stdout.write(`local: ${line}\n`);
  await ensureLocalPackages(log);

  let stack: LocalStack | undefined;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: stopping every process the stack started`);
    // Still starting: startLocalStack finishes (or fails and cleans up), then the code below stops it.
    if (!stack) return;
    await stack.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));

  stack = await startLocalStack({
    httpPort: parsedHttp.data,
    httpsPort: parsedHttps.data,
    ...(values.dir ? { rootDir: values.dir } : {}),
    webhookAllowedHosts,
    webhookAllowHttp: values["allow-webhook-http"] === true,
    log,
  });
  if (stopping) {
    await stack.stop();
    process.exit(0);
  }
  const curlBase = `curl --cacert ${stack.caCert} --resolve ${stack.resolve}`;
  process.stdout.write(`
wagate is running locally (nginx + ModSecurity + certbot/Pebble certificate + gateway, sandbox transport).

  Base URL        ${stack.baseUrl}   (HTTP ${stack.httpUrl} redirects to HTTPS)
  CA certificate  ${stack.caCert}   (Pebble's root: it issued the served certificate)
  Sandbox outbox  ${stack.sandboxOutbox}   (every "sent" message, one JSON line each)
  Facts for scripts ${stack.rootDir}/stack.json (0600: holds the demo token and the webhook app secret)

  Try it:
    ${curlBase} ${stack.baseUrl}/healthz
    ${curlBase} -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{"type":"text","to":"+14155550123","text":{"body":"hello from wagate"}}' ${stack.baseUrl}/v1/messages

  Demo token (every scope, 24 h):
    TOKEN=${stack.adminToken}

  Meta's webhook  ${stack.metaWebhookUrl}   (verify token and app secret: stack.json)
  Outbound webhooks may go to ${
    stack.webhookAllowedHosts.length ? stack.webhookAllowedHosts.join(", ") : "public hosts only"
  }${stack.webhookAllowHttp ? " (http allowed)" : " (https only)"}   (--allow-webhook-host, --allow-webhook-http)

Ctrl-C stops everything.
`);
  // Stay in the foreground; if a process of the stack dies, say so and stop the rest.
  const died = await Promise.race(
    stack.processes().map((p) => p.exited.then((code) => ({ name: p.name, code }))),
  );
  if (!stopping) {
    log(`${died.name} exited (${died.code}); stopping the stack`);
    await stack.stop();
    process.exit(1);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`local: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
