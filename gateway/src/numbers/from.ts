import { ApiError } from "../http/errors.js";
import type { NumberRecord, NumbersStore } from "../store/numbers.js";

// `from` on every send: a number id of the registry, or `default` (the number configured by WHATSAPP_*), which is
// also what a send without `from` uses. Resolved from the registry's in-memory copy (no query per request), and
// refused before anything is queued when the number is unknown or cannot send.

export const DEFAULT_NUMBER_ID = "default";

/** The sending number of a request: undefined for the default number. */
export interface SendingNumber {
  numberId: string | undefined;
  /** The transport that will carry it: `web` sends no templates and OTPs go as plain text. */
  web: boolean;
}

export const DEFAULT_SENDING_NUMBER: SendingNumber = { numberId: undefined, web: false };

/** The statuses in which a web number accepts messages: linked, even if its socket is down for a moment. */
export function webNumberCanSend(number: NumberRecord): boolean {
  return number.status === "connected" || number.status === "disconnected";
}

export function resolveFrom(numbers: NumbersStore, from: string | undefined): SendingNumber {
  if (from === undefined || from === DEFAULT_NUMBER_ID) return DEFAULT_SENDING_NUMBER;
  const number = numbers.cachedNumber(from);
  if (!number) throw new ApiError(422, "unknown_number", "from: no such number");
  if (number.transport === "web" && !webNumberCanSend(number)) {
    throw new ApiError(
      422,
      "number_unlinked",
      `from: number ${number.name} is ${number.status}; an admin must link it first (POST /v1/numbers/${number.id}/link)`,
    );
  }
  return { numberId: number.id, web: number.transport === "web" };
}

/**
 * What a web number cannot send, refused before anything is queued. WhatsApp Web has no templates; interactive
 * messages sent through it are not shown by most phones (they are a Cloud API feature); uploaded media live at
 * Meta. Media by link are fetched by the gateway itself, through its SSRF guard (never by Baileys).
 */
const CLOUD_ONLY: Record<string, { code: string; what: string }> = {
  template: { code: "template_needs_cloud", what: "templates" },
  interactive: { code: "interactive_needs_cloud", what: "interactive messages" },
  image: { code: "media_needs_cloud", what: "media messages" },
  video: { code: "media_needs_cloud", what: "media messages" },
  audio: { code: "media_needs_cloud", what: "media messages" },
  document: { code: "media_needs_cloud", what: "media messages" },
  sticker: { code: "media_needs_cloud", what: "media messages" },
};

/** Why a web number cannot send a message of this type; undefined when it can. */
export function cloudOnly(type: string): { code: string; what: string } | undefined {
  return CLOUD_ONLY[type];
}

/** The media a web number sends by `link` (fetched by the gateway through its SSRF guard: media/link-fetch.ts). */
const MEDIA = new Set(["image", "video", "audio", "document", "sticker"]);

/** Refuses (422, before anything is queued) a message of this type from a web number: sends and broadcasts. */
export function refuseUnsupportedOnWeb(sending: SendingNumber, type: string, message?: unknown): void {
  if (!sending.web) return;
  if (MEDIA.has(type)) {
    const object = (message as Record<string, { link?: unknown } | undefined> | undefined)?.[type];
    if (typeof object?.link === "string") return;
    throw new ApiError(
      422,
      "media_needs_cloud",
      `${type}.id: uploaded media are sent by cloud numbers only; a web number sends media by link`,
    );
  }
  const refusal = CLOUD_ONLY[type];
  if (refusal) {
    throw new ApiError(
      422,
      refusal.code,
      `type: ${refusal.what} are sent by cloud numbers only; from names a web number`,
    );
  }
}
