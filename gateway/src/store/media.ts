// Persistence of media: what was uploaded through POST /v1/media (our id → Meta's media id) and the media ids of
// inbound messages (registered when the message is processed), so GET /v1/media/:id serves only ids it knows.
// The bytes themselves are never stored: they stream through.

export type MediaDirection = "in" | "out";

export interface MediaRecord {
  /** Ours (a UUIDv7): what POST /v1/media answers. Inbound media are looked up by Meta's id instead. */
  id: string;
  /** The token `sub` that uploaded it; null for inbound media (every `inbox` reader may fetch them). */
  subject: string | null;
  /** The number it belongs to (numbers registry); null for the default number. */
  numberId: string | null;
  direction: MediaDirection;
  /** Meta's media id. */
  providerMediaId: string;
  mimeType: string | null;
  size: number | null;
  /** As Meta or our upload computed it: hex for uploads, whatever Meta sent for inbound media. */
  sha256: string | null;
  /** The inbound message that carried it (Meta's wamid); null for uploads. */
  messageId: string | null;
  createdAt: number;
  /**
   * A WhatsApp Web number's inbound medium: what Baileys needs to download and decrypt it again (media key, direct
   * path, URL), sealed (media/web-media.ts). Absent for Meta's media and uploads.
   */
  source?: Buffer | null;
}

export type NewMedia = Omit<MediaRecord, "id"> & { id: string };

export interface MediaStore {
  /** Commits an uploaded medium before its id is answered. */
  recordMedia(media: NewMedia): Promise<void>;
  /** Registers inbound media ids; one already registered is left as it is. */
  registerInboundMedia(media: readonly NewMedia[]): Promise<void>;
  /** An upload by our id. */
  getMedia(id: string): Promise<MediaRecord | undefined>;
  /** An inbound medium by Meta's media id. */
  getInboundMedia(providerMediaId: string): Promise<MediaRecord | undefined>;
}
