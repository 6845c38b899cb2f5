// The outgoing message model shared by routes, the outbox and the transports.

export interface TemplateParameter {
  type: "text" | "payload" | "coupon_code";
  text?: string;
  payload?: string;
  coupon_code?: string;
}

export interface TemplateComponent {
  type: "header" | "body" | "button";
  sub_type?: "url" | "quick_reply" | "copy_code";
  index?: number;
  parameters: TemplateParameter[];
}

export type OutgoingMessage =
  | { type: "text"; to: string; text: { body: string; preview_url?: boolean } }
  | {
      type: "template";
      to: string;
      template: { name: string; language: string; components?: TemplateComponent[] };
    };

export type MessageKind = "text" | "template" | "otp";

/** Internal status; `sending` is shown as `queued` through the API (the contract's five states). */
export type MessageStatus = "queued" | "sending" | "sent" | "delivered" | "read" | "failed";
export type PublicStatus = "queued" | "sent" | "delivered" | "read" | "failed";

export function publicStatus(status: MessageStatus): PublicStatus {
  return status === "sending" ? "queued" : status;
}

/**
 * Status webhooks arrive in any order: a status only replaces one of lower rank. `failed` sits between `sent`
 * and `delivered`: it overrides a send we thought succeeded, but a later `delivered` or `read` proves delivery.
 */
export const STATUS_RANK: Record<MessageStatus, number> = {
  queued: 0,
  sending: 0,
  sent: 1,
  failed: 1.5,
  delivered: 2,
  read: 3,
};

/** Lower runs first. Single messages and OTPs share the top priority; bulk sends (broadcasts) use a larger one. */
export const PRIORITY = { interactive: 0, bulk: 10 } as const;

/** Stands in a stored payload for a secret kept sealed beside it (an OTP code); filled in just before sending. */
export const SECRET_PLACEHOLDER = "{{secret}}";

export function fillSecret(message: OutgoingMessage, secret: string): OutgoingMessage {
  // A web number sends an OTP as plain text (no templates there).
  if (message.type === "text")
    return {
      ...message,
      text: { ...message.text, body: message.text.body.replaceAll(SECRET_PLACEHOLDER, secret) },
    };
  if (!message.template.components) return message;
  return {
    ...message,
    template: {
      ...message.template,
      components: message.template.components.map((component) => ({
        ...component,
        parameters: component.parameters.map((p) =>
          p.type === "text" && p.text === SECRET_PLACEHOLDER ? { ...p, text: secret } : p,
        ),
      })),
    },
  };
}
