import { readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { encryptedStream } from "baileys";

// WhatsApp's media servers as a web number meets them, on 127.0.0.1 over real HTTP: each file is encrypted with
// Baileys' own media encryption (encryptedStream: a random media key, AES-256-CBC, the 10-byte MAC appended), so the
// gateway's download and decryption run as against mmg.whatsapp.net. `media()` answers the message fields a phone
// would send (mediaKey, directPath, url, fileSha256, fileLength).

export type WebMediaType = "image" | "video" | "audio" | "document" | "sticker";

export interface EncryptedMedium {
  /** The fields of Baileys' imageMessage (videoMessage, …) that say where the file is and how to decrypt it. */
  fields: {
    mediaKey: Uint8Array;
    directPath: string;
    url: string;
    fileSha256: Uint8Array;
    fileEncSha256: Uint8Array;
    fileLength: number;
  };
}

export interface FakeWaMedia {
  /** `http://127.0.0.1:port`: what the gateway fetches from instead of https://mmg.whatsapp.net. */
  readonly origin: string;
  /** Paths requested, in order. */
  readonly requested: string[];
  media(plain: Buffer, type: WebMediaType): Promise<EncryptedMedium>;
  /** Replaces the stored ciphertext of a path (a server serving something else). */
  tamper(directPath: string, change: (encrypted: Buffer) => Buffer): void;
  /** Removes a file: the server answers 404, as WhatsApp does for an expired medium. */
  expire(directPath: string): void;
  close(): Promise<void>;
}

export async function startFakeWaMedia(): Promise<FakeWaMedia> {
  const files = new Map<string, Buffer>();
  const requested: string[] = [];
  let seq = 0;
  const server: Server = createServer((req, res) => {
    const path = req.url ?? "/";
    requested.push(path);
    const file = files.get(path);
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": file.length });
    res.end(file);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requested,
    async media(plain, type) {
      const encrypted = await encryptedStream(plain, type);
      const bytes = readFileSync(encrypted.encFilePath);
      rmSync(encrypted.encFilePath, { force: true });
      const directPath = `/v/t62.7118-24/${++seq}_${type}.enc?ccb=11-4&oh=01_Q5AaI&oe=68B1A1B2`;
      files.set(directPath, bytes);
      return {
        fields: {
          mediaKey: encrypted.mediaKey,
          directPath,
          url: `https://mmg.whatsapp.net${directPath}&mms3=true`,
          fileSha256: encrypted.fileSha256,
          fileEncSha256: encrypted.fileEncSha256,
          fileLength: encrypted.fileLength,
        },
      };
    },
    tamper(directPath, change) {
      const file = files.get(directPath);
      if (file) files.set(directPath, change(Buffer.from(file)));
    },
    expire(directPath) {
      files.delete(directPath);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
