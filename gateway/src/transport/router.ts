import type { Sealer } from "../crypto/sealer.js";
import type { OutgoingMessage } from "../messages.js";
import { numberCredentialAssociatedData } from "../numbers/sealing.js";
import type { NumbersStore } from "../store/numbers.js";
import { createCloudTransport } from "./cloud.js";
import type { ReadReceipt, SendContext, SendOutcome, Transport } from "./transport.js";

// Sends each message from the number it names: the default number's transport (WHATSAPP_*), a cloud number's own
// Cloud API client (its access token opened from the store when first needed, rebuilt when the number changes), or
// the web transport. In sandbox mode nothing leaves the machine: cloud numbers are recorded like the default one.

export interface TransportRouterOptions {
  defaultTransport: Transport;
  numbers: NumbersStore;
  sealer: Sealer;
  /** `sandbox`: cloud numbers' messages go to the default (sandbox) transport, marked with their number. */
  mode: "cloud" | "sandbox";
  graphBaseUrl: string;
  /** WhatsApp Web numbers (transport/web); without it their messages wait. */
  web?: Transport;
}

export function createTransportRouter(options: TransportRouterOptions): Transport {
  const clouds = new Map<string, { version: number; transport: Transport }>();

  function cloudTransport(
    numberId: string,
    version: number,
    phoneNumberId: string,
    credential: Buffer,
  ): Transport {
    const cached = clouds.get(numberId);
    if (cached && cached.version === version) return cached.transport;
    void cached?.transport.close?.();
    const transport = createCloudTransport({
      baseUrl: options.graphBaseUrl,
      phoneNumberId,
      accessToken: options.sealer.open(credential, numberCredentialAssociatedData(numberId)),
    });
    clouds.set(numberId, { version, transport });
    return transport;
  }

  /** The transport of a number (undefined: the default number's), or why there is none. */
  function transportOf(numberId: string | undefined): Transport | SendOutcome {
    if (!numberId) return options.defaultTransport;
    const number = options.numbers.cachedNumber(numberId);
    if (!number) {
      return { kind: "permanent", code: "number_deleted", message: "the sending number no longer exists" };
    }
    if (number.transport === "web") {
      if (!options.web)
        return { kind: "retryable", code: "web_unavailable", message: "the web transport is not running" };
      return options.web;
    }
    if (options.mode === "sandbox") return options.defaultTransport;
    if (!number.phoneNumberId || !number.credential) {
      return { kind: "permanent", code: "number_misconfigured", message: "the number has no credentials" };
    }
    try {
      return cloudTransport(number.id, number.updatedAt, number.phoneNumberId, number.credential);
    } catch {
      return {
        kind: "permanent",
        code: "credential_unopenable",
        message: "the number's access token cannot be opened with API_SECRET; set it again (PATCH)",
      };
    }
  }

  return {
    name: "router",
    async send(message: OutgoingMessage, context: SendContext): Promise<SendOutcome> {
      const transport = transportOf(context.numberId);
      return "kind" in transport ? transport : transport.send(message, context);
    },
    async markRead(receipt: ReadReceipt): Promise<SendOutcome> {
      const transport = transportOf(receipt.numberId);
      if ("kind" in transport) return transport;
      if (!transport.markRead)
        return {
          kind: "permanent",
          code: "read_unsupported",
          message: "this transport sends no read receipts",
        };
      return transport.markRead(receipt);
    },
    async close() {
      await options.defaultTransport.close?.();
      await options.web?.close?.();
      for (const { transport } of clouds.values()) await transport.close?.();
      clouds.clear();
    },
  };
}
