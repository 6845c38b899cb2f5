import type { OutgoingMessage } from "../messages.js";
import { toProviderNumber } from "../phone.js";
import { classifyGraphError, classifyNetworkError, type GraphErrorBody } from "./graph-errors.js";
import type { SendContext, SendOutcome, Transport } from "./transport.js";

export interface CloudTransportOptions {
  /** Includes the API version, e.g. https://graph.facebook.com/v21.0 */
  baseUrl: string;
  phoneNumberId: string;
  accessToken: string;
}

/** The request body of Meta's `POST /{phone-number-id}/messages`. */
export function graphRequestBody(message: OutgoingMessage, messageId: string): Record<string, unknown> {
  const common = {
    messaging_product: "whatsapp",
    recipient_type: "individual",
    to: toProviderNumber(message.to),
    biz_opaque_callback_data: messageId,
  };
  if (message.type === "text") {
    return {
      ...common,
      type: "text",
      text: { body: message.text.body, preview_url: message.text.preview_url ?? false },
    };
  }
  const { name, language, components } = message.template;
  return {
    ...common,
    type: "template",
    template: { name, language: { code: language }, ...(components ? { components } : {}) },
  };
}

export function createCloudTransport(options: CloudTransportOptions): Transport {
  const url = `${options.baseUrl}/${encodeURIComponent(options.phoneNumberId)}/messages`;
  const authorization = `Bearer ${options.accessToken}`;
  return {
    name: "cloud",
    async send(message: OutgoingMessage, context: SendContext): Promise<SendOutcome> {
      let response: Response;
      try {
        response = await fetch(url, {
          method: "POST",
          headers: { authorization, "content-type": "application/json" },
          body: JSON.stringify(graphRequestBody(message, context.messageId)),
          signal: context.signal,
          redirect: "error",
        });
      } catch (error) {
        return classifyNetworkError(error);
      }
      let body: unknown;
      try {
        body = await response.json();
      } catch {
        body = undefined;
      }
      if (response.ok) {
        const id = (body as { messages?: Array<{ id?: unknown }> } | undefined)?.messages?.[0]?.id;
        return { kind: "accepted", providerMessageId: typeof id === "string" ? id : null };
      }
      return classifyGraphError(response.status, body as GraphErrorBody | undefined);
    },
  };
}
