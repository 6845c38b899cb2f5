import type { Declared, MediaType } from "./kinds.js";

// What the first bytes of an upload are, by their magic numbers (never by the Content-Type a client declares).
// The result lists the media types the bytes can be: one for most formats; several where the bytes cannot tell
// (an ISO-BMFF file with a generic brand is audio/mp4 or video/mp4; a legacy Office file whose directory lies
// past the head is a .doc, .xls or .ppt). Then the declared type chooses among them, and a declared type outside
// the list is a mismatch.

/** How many leading bytes the sniffer reads (OOXML's part names and an OLE2 directory sit within them). */
export const SNIFF_BYTES = 64 * 1024;

export interface Sniffed {
  /** The types the bytes can be; the first is taken when the client declares application/octet-stream. */
  readonly types: readonly MediaType[];
  /** What the bytes are, for messages ("a PNG image", "plain text"). */
  readonly what: string;
  /** true when the bytes alone cannot choose among `types`: an undeclared upload is refused. */
  readonly ambiguous?: boolean;
}

const startsWith = (head: Buffer, bytes: readonly number[], at = 0) =>
  head.length >= at + bytes.length && bytes.every((b, i) => head[at + i] === b);
const ascii = (head: Buffer, at: number, length: number) =>
  head.length >= at + length ? head.toString("latin1", at, at + length) : "";

const OOXML = {
  "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
} as const;
const OOXML_TYPES = Object.values(OOXML);

/** The names of the zip's local file headers found in the head. */
function zipEntryNames(head: Buffer): string[] {
  const names: string[] = [];
  let at = 0;
  while (at + 30 <= head.length && head.readUInt32LE(at) === 0x04034b50) {
    const flags = head.readUInt16LE(at + 6);
    const compressedSize = head.readUInt32LE(at + 18);
    const nameLength = head.readUInt16LE(at + 26);
    const extraLength = head.readUInt16LE(at + 28);
    if (at + 30 + nameLength > head.length) break;
    names.push(head.toString("utf8", at + 30, at + 30 + nameLength));
    // A size given after the data (bit 3) is unknown here: stop walking, the names seen so far must do.
    if (flags & 0x08) break;
    at += 30 + nameLength + extraLength + compressedSize;
  }
  return names;
}

function sniffZip(head: Buffer): Sniffed | undefined {
  const names = zipEntryNames(head);
  for (const [prefix, type] of Object.entries(OOXML)) {
    if (names.some((n) => n.startsWith(prefix)))
      return { types: [type], what: "an Office Open XML document" };
  }
  // An OOXML package whose parts lie past the head: the declared type chooses among the three.
  if (names.includes("[Content_Types].xml") || names.includes("_rels/.rels"))
    return { types: OOXML_TYPES, what: "an Office Open XML document", ambiguous: true };
  return undefined;
}

const LEGACY_OFFICE: ReadonlyArray<readonly [string, MediaType]> = [
  ["WordDocument", "application/msword"],
  ["Workbook", "application/vnd.ms-excel"],
  ["Book", "application/vnd.ms-excel"],
  ["PowerPoint Document", "application/vnd.ms-powerpoint"],
];

function sniffCompoundFile(head: Buffer): Sniffed {
  // The stream names of an OLE2 directory are UTF-16LE; when the directory lies within the head, they tell.
  for (const [name, type] of LEGACY_OFFICE) {
    if (head.includes(Buffer.from(`${name}\0`, "utf16le")))
      return { types: [type], what: "a legacy Office file" };
  }
  return {
    types: ["application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint"],
    what: "a legacy Office file",
    ambiguous: true,
  };
}

function sniffIsoMedia(head: Buffer): Sniffed | undefined {
  if (ascii(head, 4, 4) !== "ftyp") return undefined;
  const boxSize = head.readUInt32BE(0);
  const brands = [ascii(head, 8, 4)];
  for (let at = 16; at + 4 <= Math.min(boxSize, head.length); at += 4) brands.push(ascii(head, at, 4));
  if (brands.some((b) => b.startsWith("3gp") || b.startsWith("3g2")))
    return { types: ["video/3gpp"], what: "a 3GPP file" };
  if (brands[0] === "M4A " || brands[0] === "M4B ")
    return { types: ["audio/mp4"], what: "an MPEG-4 audio file" };
  if (brands[0] === "qt  ") return undefined; // QuickTime: not a format WhatsApp takes.
  return { types: ["video/mp4", "audio/mp4"], what: "an MPEG-4 file" };
}

/** MPEG audio frame header (MP3 without an ID3 tag) or an ADTS AAC frame. */
function sniffFrameSync(head: Buffer): Sniffed | undefined {
  if (head.length < 4 || head[0] !== 0xff || ((head[1] ?? 0) & 0xe0) !== 0xe0) return undefined;
  const b1 = head[1] ?? 0;
  const layer = (b1 >> 1) & 0x03;
  if ((b1 & 0xf6) === 0xf0) return { types: ["audio/aac"], what: "AAC audio (ADTS)" };
  const version = (b1 >> 3) & 0x03;
  const bitrate = ((head[2] ?? 0) >> 4) & 0x0f;
  const sampleRate = ((head[2] ?? 0) >> 2) & 0x03;
  if (version !== 1 && layer !== 0 && bitrate !== 0x0f && sampleRate !== 0x03)
    return { types: ["audio/mpeg"], what: "MPEG audio" };
  return undefined;
}

/** UTF-8 text without control characters other than whitespace (the head may end inside a character). */
function isPlainText(head: Buffer, complete: boolean): boolean {
  if (head.length === 0) return false;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(complete ? head : trimPartialCharacter(head));
  } catch {
    return false;
  }
  // Tabs, line feeds, form feeds and carriage returns are text; NUL and the other C0/C1 controls are not.
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0c && c !== 0x0d) || (c >= 0x7f && c <= 0x9f))
      return false;
  }
  return true;
}

function trimPartialCharacter(head: Buffer): Buffer {
  // Drop at most 3 trailing bytes of a UTF-8 sequence cut off by the end of the head.
  for (let back = 1; back <= Math.min(3, head.length); back++) {
    const byte = head[head.length - back] ?? 0;
    if ((byte & 0xc0) === 0x80) continue;
    if (byte >= 0xc0) {
      const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      return length > back ? head.subarray(0, head.length - back) : head;
    }
    return head;
  }
  return head;
}

/**
 * `head`: the first SNIFF_BYTES of the upload (or all of it, `complete`). Undefined when the bytes are no format
 * WhatsApp takes (an executable, a zip that is no Office document, an Ogg stream that is not Opus, ...).
 */
export function sniffMedia(head: Buffer, complete: boolean): Sniffed | undefined {
  if (startsWith(head, [0xff, 0xd8, 0xff])) return { types: ["image/jpeg"], what: "a JPEG image" };
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
    return { types: ["image/png"], what: "a PNG image" };
  if (ascii(head, 0, 4) === "RIFF" && ascii(head, 8, 4) === "WEBP")
    return { types: ["image/webp"], what: "a WebP image" };
  if (ascii(head, 0, 5) === "%PDF-") return { types: ["application/pdf"], what: "a PDF document" };
  if (ascii(head, 0, 6) === "#!AMR\n") return { types: ["audio/amr"], what: "AMR audio" };
  if (ascii(head, 0, 4) === "OggS") {
    // The first page's packet names its codec: WhatsApp takes Opus only.
    return head.includes(Buffer.from("OpusHead"))
      ? { types: ["audio/ogg"], what: "Ogg Opus audio" }
      : undefined;
  }
  if (ascii(head, 0, 3) === "ID3") return { types: ["audio/mpeg"], what: "MPEG audio (ID3)" };
  if (startsWith(head, [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1])) return sniffCompoundFile(head);
  if (startsWith(head, [0x50, 0x4b, 0x03, 0x04])) return sniffZip(head);
  const iso = sniffIsoMedia(head);
  if (iso) return iso;
  const frame = sniffFrameSync(head);
  if (frame) return frame;
  if (isPlainText(head, complete)) return { types: ["text/plain"], what: "plain text" };
  return undefined;
}

export type TypeDecision =
  | { kind: "ok"; type: MediaType }
  /** 415: the bytes are no medium WhatsApp takes, or they cannot tell which and nothing was declared. */
  | { kind: "unsupported"; message: string }
  /** 422: the bytes are a medium, but not the one the Content-Type declares. */
  | { kind: "mismatch"; message: string };

/** The upload's type: what the bytes are, narrowed (never widened) by what the client declared. */
export function chooseType(declared: Declared, sniffed: Sniffed | undefined): TypeDecision {
  if (!sniffed) {
    return {
      kind: "unsupported",
      message:
        "the bytes are not a medium WhatsApp accepts (jpeg, png, webp, mp4, 3gpp, aac, amr, mpeg, ogg/opus, pdf, Office, plain text)",
    };
  }
  if (declared.kind === "unknown") {
    if (sniffed.ambiguous)
      return {
        kind: "unsupported",
        message: `the bytes are ${sniffed.what}; declare which one in Content-Type (${sniffed.types.join(", ")})`,
      };
    return { kind: "ok", type: sniffed.types[0] as MediaType };
  }
  if (declared.kind === "type" && sniffed.types.includes(declared.type))
    return { kind: "ok", type: declared.type };
  return {
    kind: "mismatch",
    message: `Content-Type: declared ${declared.type}, but the bytes are ${sniffed.what} (${sniffed.types.join(" or ")})`,
  };
}
