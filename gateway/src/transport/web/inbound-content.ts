import type { proto } from "baileys";
import { type InboundContent, parseInboundContent } from "../../inbound/content.js";

// A WhatsApp Web message (Baileys' proto.IMessage) in the inbox's shape, which is Meta's webhook shape: the same
// fields whichever transport received the message (inbound/content.ts). WhatsApp Web media carry no Meta media id:
// a web number's medium is named by its message's key id (what GET /v1/media/:id takes for it). Wrappers
// (disappearing, view-once, document-with-caption) are opened as Baileys' normalizeMessageContent does; WhatsApp's
// own signalling (protocolMessage: deletes, key shares, history-sync notices) is no message of the chat.

export interface WebInboundContent {
  type: string;
  /** The text of a text message (what automated replies match). */
  text: string | null;
  content: InboundContent | null;
  mediaId: string | null;
}

const WRAPPERS = [
  "ephemeralMessage",
  "viewOnceMessage",
  "viewOnceMessageV2",
  "viewOnceMessageV2Extension",
  "documentWithCaptionMessage",
] as const;

type Message = proto.IMessage;
type ContextInfo = proto.IContextInfo | null | undefined;

function unwrap(message: Message): Message {
  let current = message;
  for (let depth = 0; depth < 5; depth++) {
    const inner = WRAPPERS.map((w) => current[w]?.message).find((m) => m);
    if (!inner) break;
    current = inner;
  }
  return current;
}

/** Baileys' getContentType: the first key that is the message's content. */
function contentKey(message: Message): string | undefined {
  return Object.keys(message).find(
    (k) =>
      (k === "conversation" || k.endsWith("Message")) &&
      k !== "senderKeyDistributionMessage" &&
      message[k as keyof Message] !== null &&
      message[k as keyof Message] !== undefined,
  );
}

const digits = (jid: string | null | undefined) =>
  jid
    ? (jid
        .split("@")[0]
        ?.split(":")[0]
        ?.replace(/[^0-9]/g, "") ?? "")
    : "";

function base64(value: Uint8Array | string | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  return typeof value === "string" ? value : Buffer.from(value).toString("base64");
}

function context(info: ContextInfo): Record<string, unknown> | undefined {
  if (!info) return undefined;
  const quoted = info.stanzaId
    ? { id: info.stanzaId, ...(digits(info.participant) ? { from: digits(info.participant) } : {}) }
    : {};
  const forwarded = info.isForwarded ? { forwarded: true } : {};
  const result = { ...quoted, ...forwarded };
  return Object.keys(result).length > 0 ? result : undefined;
}

/** The fields of a vCard a contact card of Meta's shape carries: name, phones (with WhatsApp ids), emails, org. */
export function contactFromVcard(displayName: string | null | undefined, vcard: string | null | undefined) {
  const phones: Array<{ phone: string; wa_id?: string; type?: string }> = [];
  const emails: Array<{ email: string }> = [];
  let formattedName = displayName ?? "";
  let company: string | undefined;
  // Folded lines continue with a space or tab (RFC 6350 §3.2).
  const lines = (vcard ?? "")
    .replace(/\r?\n[ \t]/g, "")
    .split(/\r?\n/)
    .slice(0, 500);
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const [name = "", ...params] = line.slice(0, colon).split(";");
    const value = line.slice(colon + 1).trim();
    if (!value) continue;
    const field = name.replace(/^item[0-9]+\./i, "").toUpperCase();
    if (field === "FN" && !displayName) formattedName = value;
    else if (field === "TEL") {
      const waid = params.find((p) => /^waid=/i.test(p))?.slice(5);
      const type = params.find((p) => /^type=/i.test(p))?.slice(5);
      phones.push({ phone: value, ...(waid ? { wa_id: waid } : {}), ...(type ? { type } : {}) });
    } else if (field === "EMAIL") emails.push({ email: value });
    else if (field === "ORG") company = value.split(";")[0] ?? value;
  }
  return {
    name: { formatted_name: formattedName },
    ...(phones.length ? { phones } : {}),
    ...(emails.length ? { emails } : {}),
    ...(company ? { org: { company } } : {}),
  };
}

/** Meta's type and object for one Baileys content type; undefined for a type the inbox keeps raw. */
function metaShape(key: string, message: Message, keyId: string): [string, unknown, ContextInfo] | undefined {
  switch (key) {
    case "conversation":
      return ["text", { body: message.conversation }, undefined];
    case "extendedTextMessage": {
      const m = message.extendedTextMessage;
      return ["text", { body: m?.text }, m?.contextInfo];
    }
    case "imageMessage":
    case "videoMessage": {
      const m = message[key];
      return [
        key === "imageMessage" ? "image" : "video",
        {
          id: keyId,
          mime_type: m?.mimetype ?? undefined,
          sha256: base64(m?.fileSha256),
          caption: m?.caption ?? undefined,
        },
        m?.contextInfo,
      ];
    }
    case "audioMessage": {
      const m = message.audioMessage;
      return [
        "audio",
        {
          id: keyId,
          mime_type: m?.mimetype ?? undefined,
          sha256: base64(m?.fileSha256),
          voice: m?.ptt === true,
        },
        m?.contextInfo,
      ];
    }
    case "documentMessage": {
      const m = message.documentMessage;
      return [
        "document",
        {
          id: keyId,
          mime_type: m?.mimetype ?? undefined,
          sha256: base64(m?.fileSha256),
          caption: m?.caption ?? undefined,
          filename: m?.fileName ?? undefined,
        },
        m?.contextInfo,
      ];
    }
    case "stickerMessage": {
      const m = message.stickerMessage;
      return [
        "sticker",
        {
          id: keyId,
          mime_type: m?.mimetype ?? undefined,
          sha256: base64(m?.fileSha256),
          animated: m?.isAnimated === true,
        },
        m?.contextInfo,
      ];
    }
    case "locationMessage":
    case "liveLocationMessage": {
      const m = message[key];
      const named = key === "locationMessage" ? message.locationMessage : undefined;
      return [
        "location",
        {
          latitude: m?.degreesLatitude,
          longitude: m?.degreesLongitude,
          name: named?.name ?? undefined,
          address: named?.address ?? undefined,
          url: named?.url ?? undefined,
        },
        m?.contextInfo,
      ];
    }
    case "contactMessage": {
      const m = message.contactMessage;
      return ["contacts", [contactFromVcard(m?.displayName, m?.vcard)], m?.contextInfo];
    }
    case "contactsArrayMessage": {
      const m = message.contactsArrayMessage;
      return [
        "contacts",
        (m?.contacts ?? []).map((c) => contactFromVcard(c.displayName, c.vcard)),
        m?.contextInfo,
      ];
    }
    case "buttonsResponseMessage": {
      const m = message.buttonsResponseMessage;
      return [
        "interactive",
        { type: "button_reply", button_reply: { id: m?.selectedButtonId, title: m?.selectedDisplayText } },
        m?.contextInfo,
      ];
    }
    case "listResponseMessage": {
      const m = message.listResponseMessage;
      return [
        "interactive",
        {
          type: "list_reply",
          list_reply: {
            id: m?.singleSelectReply?.selectedRowId,
            title: m?.title,
            description: m?.description ?? undefined,
          },
        },
        m?.contextInfo,
      ];
    }
    case "templateButtonReplyMessage": {
      const m = message.templateButtonReplyMessage;
      return [
        "button",
        { payload: m?.selectedId ?? undefined, text: m?.selectedDisplayText },
        m?.contextInfo,
      ];
    }
    case "reactionMessage": {
      const m = message.reactionMessage;
      // An empty text is a removed reaction: Meta then omits `emoji`.
      return ["reaction", { message_id: m?.key?.id, ...(m?.text ? { emoji: m.text } : {}) }, undefined];
    }
    default:
      return undefined;
  }
}

/** The inbox's view of a Baileys message; undefined for WhatsApp's own signalling, which is not stored. */
export function webInboundContent(
  raw: Message | null | undefined,
  keyId: string,
): WebInboundContent | undefined {
  const message = unwrap(raw ?? {});
  const key = contentKey(message);
  if (key === "protocolMessage") return undefined;
  if (!key) return { type: "unknown", text: null, content: null, mediaId: null };
  const shape = metaShape(key, message, keyId);
  if (!shape) return { type: key.replace(/Message$/, ""), text: null, content: null, mediaId: null };
  const [type, object, info] = shape;
  const text = type === "text" ? (object as { body?: unknown }).body : null;
  const quoted = context(info);
  const parsed = parseInboundContent(type, { [type]: object, ...(quoted ? { context: quoted } : {}) });
  return { type, text: typeof text === "string" ? text : null, ...parsed };
}

/** What Baileys needs to download and decrypt a web number's inbound medium again (sealed at rest: media/web-media.ts). */
export interface WebMediaSource {
  /** Baileys' media type: which HKDF info derives the keys. */
  mediaType: "image" | "video" | "audio" | "document" | "sticker";
  /** Base64: with the URL, whoever has it can decrypt the file. */
  mediaKey: string;
  directPath?: string;
  url?: string;
  mimeType?: string;
  fileLength?: number;
  /** Base64 sha256 of the decrypted file, as the sender's phone computed it. */
  fileSha256?: string;
}

const MEDIA_MESSAGES = {
  imageMessage: "image",
  videoMessage: "video",
  audioMessage: "audio",
  documentMessage: "document",
  stickerMessage: "sticker",
} as const;

/** The download source of a media message; undefined for any other message, or a medium without its key. */
export function webMediaSource(raw: Message | null | undefined): WebMediaSource | undefined {
  const message = unwrap(raw ?? {});
  const key = contentKey(message);
  if (!key || !Object.hasOwn(MEDIA_MESSAGES, key)) return undefined;
  const mediaType = MEDIA_MESSAGES[key as keyof typeof MEDIA_MESSAGES];
  const m = message[key as keyof typeof MEDIA_MESSAGES];
  const mediaKey = base64(m?.mediaKey);
  if (!m || !mediaKey || (!m.directPath && !m.url)) return undefined;
  // A protobuf uint64: a Long object when decoded from the wire, a number when built in code.
  const declared = m.fileLength as { toNumber?: () => number } | number | null | undefined;
  const length =
    declared === null || declared === undefined
      ? undefined
      : typeof declared === "number"
        ? declared
        : declared.toNumber?.();
  const fileSha256 = base64(m.fileSha256);
  return {
    mediaType,
    mediaKey,
    ...(m.directPath ? { directPath: m.directPath } : {}),
    ...(m.url ? { url: m.url } : {}),
    ...(m.mimetype ? { mimeType: m.mimetype } : {}),
    ...(length !== undefined && Number.isSafeInteger(length) && length >= 0 ? { fileLength: length } : {}),
    ...(fileSha256 ? { fileSha256 } : {}),
  };
}
