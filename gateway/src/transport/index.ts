import type { Config } from "../config.js";
import { createCloudTransport } from "./cloud.js";
import { createSandboxTransport } from "./sandbox.js";
import type { Transport } from "./transport.js";

export type { ReadReceipt, SendContext, SendOutcome, Transport } from "./transport.js";

/** `dnsServers`: name servers for the Graph API host instead of the system's (tests). */
export function createTransport(config: Config, dnsServers?: readonly string[]): Transport {
  if (config.WHATSAPP_TRANSPORT === "sandbox") return createSandboxTransport(config.SANDBOX_OUTBOX_PATH);
  // loadConfig guarantees both are present for cloud.
  return createCloudTransport({
    baseUrl: config.GRAPH_API_BASE_URL,
    phoneNumberId: config.WHATSAPP_PHONE_NUMBER_ID as string,
    accessToken: config.WHATSAPP_ACCESS_TOKEN as string,
    ...(dnsServers ? { dnsServers } : {}),
  });
}
