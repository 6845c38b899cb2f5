import type { Readable } from "node:stream";
import { z } from "zod";
import type { Sealer } from "../crypto/sealer.js";
import { mediaSourceAssociatedData } from "../numbers/sealing.js";
import { loadBaileys } from "../transport/web/baileys.js";
import type { WebMediaSource } from "../transport/web/inbound-content.js";

// A WhatsApp Web number's inbound medium: WhatsApp keeps it encrypted on its media servers; the message carries the
// media key and where the file is (direct path, URL). Those are sealed at rest (AES-GCM under API_SECRET, associated
// data naming the medium's row) and opened only to fetch the file again for GET /v1/media/:id, which Baileys' own
// helper downloads and decrypts as it streams. The URL comes from the sender's message, so the host is not trusted:
// only https on WhatsApp's media hosts (*.whatsapp.net) is fetched, never an address the sender chose.

const sourceSchema = z.object({
  mediaType: z.enum(["image", "video", "audio", "document", "sticker"]),
  mediaKey: z.string().min(1),
  directPath: z.string().startsWith("/").optional(),
  url: z.string().optional(),
  mimeType: z.string().optional(),
  fileLength: z.number().int().min(0).optional(),
  fileSha256: z.string().optional(),
});

export function sealWebMediaSource(sealer: Sealer, mediaRowId: string, source: WebMediaSource): Buffer {
  return sealer.seal(JSON.stringify(source), mediaSourceAssociatedData(mediaRowId));
}

/** Throws when API_SECRET changed without the previous one kept, or the value was moved to another row. */
export function openWebMediaSource(sealer: Sealer, mediaRowId: string, sealed: Buffer): WebMediaSource {
  return sourceSchema.parse(
    JSON.parse(sealer.open(sealed, mediaSourceAssociatedData(mediaRowId))),
  ) as WebMediaSource;
}

export class WebMediaRefused extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "WebMediaRefused";
  }
}

/** WhatsApp's media CDN: mmg.whatsapp.net and media-*.cdn.whatsapp.net. */
const WHATSAPP_MEDIA_HOST = /^(?:[a-z0-9-]+\.)+whatsapp\.net$/;
const DEFAULT_HOST = "mmg.whatsapp.net";

/**
 * The URL to fetch: the direct path on the message URL's host (as Baileys does), or the URL itself; refused unless
 * it is https on a WhatsApp media host. `origin` replaces scheme and host (tests point it at a local server).
 */
export function webMediaUrl(source: WebMediaSource, origin?: string): string {
  let given: URL | undefined;
  if (source.url) {
    try {
      given = new URL(source.url);
    } catch {
      throw new WebMediaRefused("the medium's URL is not a URL");
    }
    if (given.protocol !== "https:" || given.username || given.password || given.port)
      throw new WebMediaRefused("the medium's URL is not plain https");
    if (!WHATSAPP_MEDIA_HOST.test(given.hostname))
      throw new WebMediaRefused("the medium's URL is not on WhatsApp's media servers");
  }
  const path = source.directPath ?? (given ? `${given.pathname}${given.search}` : undefined);
  if (!path?.startsWith("/") || path.startsWith("//"))
    throw new WebMediaRefused("the medium names no path to fetch");
  return `${origin ?? `https://${given?.hostname ?? DEFAULT_HOST}`}${path}`;
}

/**
 * The decrypted bytes as they arrive, from Baileys' downloadContentFromMessage. An HTTP refusal of WhatsApp's
 * server throws Baileys' Boom error, whose `output.statusCode` is the server's status.
 */
export async function downloadWebMedium(source: WebMediaSource, origin?: string): Promise<Readable> {
  const url = webMediaUrl(source, origin);
  const baileys = await loadBaileys();
  // The checked URL alone (no direct path): Baileys would otherwise rebuild it on the host it picks.
  return baileys.downloadContentFromMessage(
    { mediaKey: Buffer.from(source.mediaKey, "base64"), directPath: null, url },
    source.mediaType,
  );
}
