import { z } from "zod";
import { uuidv7 } from "../ids.js";
import type { NewMedia } from "../store/media.js";
import type { InboundMessage } from "../store/store.js";

// The media ids an inbound message carries, read from Meta's message object as stored (`raw`): `image`, `video`,
// `audio`, `document` and `sticker` each hold `{ id, mime_type, sha256 }`. Messages of WhatsApp Web numbers have
// another shape and carry none.

const MEDIA_FIELDS = ["image", "video", "audio", "document", "sticker"] as const;

const metaMedium = z.object({
  id: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[A-Za-z0-9._-]+$/),
  mime_type: z.string().max(255).optional(),
  sha256: z.string().max(128).optional(),
});

export function inboundMediaOf(message: InboundMessage, now: number): NewMedia[] {
  const raw = message.raw;
  if (typeof raw !== "object" || raw === null) return [];
  const found: NewMedia[] = [];
  for (const field of MEDIA_FIELDS) {
    const parsed = metaMedium.safeParse((raw as Record<string, unknown>)[field]);
    if (!parsed.success) continue;
    found.push({
      id: uuidv7(now),
      subject: null,
      numberId: message.numberId ?? null,
      direction: "in",
      providerMediaId: parsed.data.id,
      mimeType: parsed.data.mime_type ?? null,
      size: null,
      sha256: parsed.data.sha256 ?? null,
      messageId: message.id,
      createdAt: now,
    });
  }
  return found;
}
