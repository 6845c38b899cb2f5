// The media WhatsApp's Cloud API accepts, by mime type, and the size cap of each kind (Meta's "supported media
// types"). One table: the upload route, the download route and the sniffer read it.

export type MediaKind = "image" | "audio" | "video" | "document" | "sticker";

/** Bytes. Meta caps static stickers at 100 KB when they are sent; the upload takes animated ones' 500 KB. */
export const MEDIA_CAPS: Readonly<Record<MediaKind, number>> = {
  image: 5 * 1024 * 1024,
  audio: 16 * 1024 * 1024,
  video: 16 * 1024 * 1024,
  document: 100 * 1024 * 1024,
  sticker: 500 * 1024,
};

/** The largest cap of all: no upload may be longer, whatever it turns out to be. */
export const MAX_MEDIA_BYTES = Math.max(...Object.values(MEDIA_CAPS));

export const MEDIA_TYPES = {
  "image/jpeg": "image",
  "image/png": "image",
  "image/webp": "sticker",
  "video/mp4": "video",
  "video/3gpp": "video",
  "audio/aac": "audio",
  "audio/amr": "audio",
  "audio/mpeg": "audio",
  "audio/mp4": "audio",
  "audio/ogg": "audio",
  "application/pdf": "document",
  "text/plain": "document",
  "application/msword": "document",
  "application/vnd.ms-excel": "document",
  "application/vnd.ms-powerpoint": "document",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "document",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "document",
  "application/vnd.openxmlformats-officedocument.presentationml.presentation": "document",
} as const satisfies Record<string, MediaKind>;

export type MediaType = keyof typeof MEDIA_TYPES;

/** The file name extension of each type: the multipart part's filename (Meta shows it for documents sent by id). */
export const EXTENSIONS: Readonly<Record<MediaType, string>> = {
  "image/jpeg": "jpg",
  "image/png": "png",
  "image/webp": "webp",
  "video/mp4": "mp4",
  "video/3gpp": "3gp",
  "audio/aac": "aac",
  "audio/amr": "amr",
  "audio/mpeg": "mp3",
  "audio/mp4": "m4a",
  "audio/ogg": "ogg",
  "application/pdf": "pdf",
  "text/plain": "txt",
  "application/msword": "doc",
  "application/vnd.ms-excel": "xls",
  "application/vnd.ms-powerpoint": "ppt",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
  "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
};

export function isMediaType(value: string): value is MediaType {
  return Object.hasOwn(MEDIA_TYPES, value);
}

/** Names clients commonly declare for the same formats. */
const ALIASES: Readonly<Record<string, MediaType>> = {
  "image/jpg": "image/jpeg",
  "image/pjpeg": "image/jpeg",
  "video/3gp": "video/3gpp",
  "audio/mp3": "audio/mpeg",
  "audio/x-m4a": "audio/mp4",
  "audio/m4a": "audio/mp4",
  "audio/opus": "audio/ogg",
  "audio/x-aac": "audio/aac",
  "audio/aacp": "audio/aac",
};

/** What a Content-Type header declares: a supported type, "unknown" (octet-stream) or anything else. */
export type Declared =
  | { kind: "type"; type: MediaType }
  | { kind: "unknown" }
  | { kind: "other"; type: string };

export function declaredType(header: string): Declared {
  const essence = (header.split(";")[0] ?? "").trim().toLowerCase();
  if (essence === "application/octet-stream") return { kind: "unknown" };
  const type = ALIASES[essence] ?? essence;
  return isMediaType(type) ? { kind: "type", type } : { kind: "other", type: essence };
}

/** The kind of a mime type Meta names (inbound media); types outside the table count as documents. */
export function kindOf(mimeType: string): MediaKind {
  const d = declaredType(mimeType);
  if (d.kind === "type") return MEDIA_TYPES[d.type];
  if (d.kind === "other") {
    if (d.type.startsWith("image/")) return "image";
    if (d.type.startsWith("video/")) return "video";
    if (d.type.startsWith("audio/")) return "audio";
  }
  return "document";
}
