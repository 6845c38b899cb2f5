import { EventEmitter } from "node:events";
import { rmSync } from "node:fs";
import { Boom } from "@hapi/boom";
import type {
  AnyMessageContent,
  AuthenticationState,
  MiscMessageGenerationOptions,
  proto,
  WAMediaUpload,
  WAMessageKey,
} from "baileys";
import type { SocketFactory, WebSocketEvents, WebSocketLike } from "../../src/transport/web/socket.js";

// A stand-in for Baileys' socket (WhatsApp's servers are not reachable here) that emits Baileys' own event shapes:
// `connection.update` with `qr`, `open` and `close` carrying a Boom error whose statusCode is one of Baileys'
// DisconnectReason values, `messages.upsert`, `messages.update` and `creds.update`. It also writes keys through the
// auth state it was given, as Baileys does during a session.

/** Baileys' DisconnectReason values. */
const MEDIA_KINDS = ["image", "video", "audio", "document", "sticker"] as const;

export interface SentMedium {
  kind: (typeof MEDIA_KINDS)[number];
  sha256: string;
  length: number;
}

export const DISCONNECT = {
  connectionClosed: 428,
  connectionLost: 408,
  connectionReplaced: 440,
  loggedOut: 401,
  restartRequired: 515,
} as const;

export class FakeWaSocket implements WebSocketLike {
  private readonly emitter = new EventEmitter();
  readonly ev = {
    on: <K extends keyof WebSocketEvents>(event: K, listener: (data: WebSocketEvents[K]) => void) => {
      this.emitter.on(event, listener);
    },
  };
  user: { id: string } | undefined;
  /** Every message sent: `text` for text messages, Baileys' content and options as given for all. */
  readonly sent: Array<{
    jid: string;
    text: string | undefined;
    id: string;
    content: AnyMessageContent;
    options: MiscMessageGenerationOptions | undefined;
    /** A medium's bytes as Baileys read them (hex sha256, length). */
    medium?: SentMedium;
  }> = [];
  readonly pairingRequests: string[] = [];
  /** The keys of every read receipt the gateway sent. */
  readonly readReceipts: WAMessageKey[] = [];
  /** When set, readMessages throws this. */
  failReads: Error | undefined;
  loggedOut = false;
  ended = false;
  /** When set, sendMessage throws this. */
  failSends: Error | undefined;
  private counter = 0;

  constructor(readonly auth: AuthenticationState) {}

  emit<K extends keyof WebSocketEvents>(event: K, data: WebSocketEvents[K]): void {
    this.emitter.emit(event, data);
  }

  qr(code = `2@${Math.random().toString(36).slice(2)},fake-noise-key,fake-identity-key,fake-adv`): string {
    this.emit("connection.update", { qr: code });
    return code;
  }

  /** The phone scanned: Baileys stores the new identity, then asks for a restart (515). */
  paired(phoneDigits: string): void {
    this.emit("creds.update", {
      me: { id: `${phoneDigits}:7@s.whatsapp.net`, name: "Phone" },
      registered: true,
    });
    this.close(DISCONNECT.restartRequired);
  }

  open(phoneDigits: string): void {
    this.user = { id: `${phoneDigits}:7@s.whatsapp.net` };
    this.emit("connection.update", {
      connection: "open",
      isNewLogin: false,
      receivedPendingNotifications: true,
    });
  }

  close(statusCode: number): void {
    this.emit("connection.update", {
      connection: "close",
      lastDisconnect: { error: new Boom("Connection Failure", { statusCode }), date: new Date() },
    });
  }

  inbound(
    messages: Array<{ id: string; from: string; text: string; timestamp?: number }>,
    type: "notify" | "append" = "notify",
  ): void {
    this.emit("messages.upsert", {
      type,
      messages: messages.map((m) => ({
        key: { remoteJid: `${m.from}@s.whatsapp.net`, fromMe: false, id: m.id },
        messageTimestamp: m.timestamp ?? Math.floor(Date.now() / 1000),
        pushName: "Ana",
        message: { conversation: m.text },
      })),
    });
  }

  /** Messages of any content, as Baileys decodes them (proto.IMessage: imageMessage, locationMessage, …). */
  inboundContent(
    messages: Array<{
      id: string;
      from: string;
      message: proto.IMessage;
      timestamp?: number;
      pushName?: string;
    }>,
  ): void {
    this.emit("messages.upsert", {
      type: "notify",
      messages: messages.map((m) => ({
        key: { remoteJid: `${m.from}@s.whatsapp.net`, fromMe: false, id: m.id },
        messageTimestamp: m.timestamp ?? Math.floor(Date.now() / 1000),
        pushName: m.pushName ?? "Ana",
        message: m.message,
      })),
    });
  }

  async readMessages(keys: WAMessageKey[]): Promise<void> {
    if (this.failReads) throw this.failReads;
    this.readReceipts.push(...keys);
  }

  /** Receipts of our messages: 2 server ack, 3 delivered, 4 read (proto.WebMessageInfo.Status). */
  receipt(id: string, to: string, status: number): void {
    this.emit("messages.update", [
      { key: { remoteJid: `${to}@s.whatsapp.net`, fromMe: true, id }, update: { status } },
    ]);
  }

  async sendMessage(jid: string, content: AnyMessageContent, options?: MiscMessageGenerationOptions) {
    if (this.failSends) throw this.failSends;
    // A medium is read and encrypted as Baileys does before its upload (encryptedStream): a stream that fails
    // fails the send.
    const kind = MEDIA_KINDS.find((k) => k in content);
    let medium: SentMedium | undefined;
    if (kind) {
      const { encryptedStream } = await import("baileys");
      const encrypted = await encryptedStream(
        (content as unknown as Record<string, WAMediaUpload>)[kind] as WAMediaUpload,
        kind,
      );
      rmSync(encrypted.encFilePath, { force: true });
      medium = {
        kind,
        sha256: Buffer.from(encrypted.fileSha256).toString("hex"),
        length: encrypted.fileLength,
      };
    }
    const id = `3EB0${(++this.counter).toString(16).toUpperCase().padStart(16, "0")}`;
    const text = "text" in content && typeof content.text === "string" ? content.text : undefined;
    this.sent.push({ jid, text, id, content, options, ...(medium ? { medium } : {}) });
    return { key: { remoteJid: jid, fromMe: true, id } };
  }

  async requestPairingCode(phoneDigits: string): Promise<string> {
    this.pairingRequests.push(phoneDigits);
    return "K7QW3MZP";
  }

  async logout(): Promise<void> {
    this.loggedOut = true;
    this.close(DISCONNECT.loggedOut);
  }

  end(): void {
    this.ended = true;
  }
}

export interface FakeSockets {
  factory: SocketFactory;
  readonly sockets: FakeWaSocket[];
  /** Resolves with the socket number `index` (0-based) once the gateway opened it. */
  opened(index: number, timeoutMs?: number): Promise<FakeWaSocket>;
}

/** A factory that records every socket the gateway opens; `onOpen` scripts what each does at once. */
export function fakeSockets(onOpen?: (socket: FakeWaSocket, index: number) => void): FakeSockets {
  const sockets: FakeWaSocket[] = [];
  const waiting: Array<{ index: number; resolve: (s: FakeWaSocket) => void }> = [];
  return {
    sockets,
    factory: async ({ auth }) => {
      const socket = new FakeWaSocket(auth);
      sockets.push(socket);
      const index = sockets.length - 1;
      // Baileys emits its first events after the caller attached its listeners.
      setImmediate(() => {
        socket.emit("connection.update", { connection: "connecting" });
        onOpen?.(socket, index);
        for (const w of waiting.filter((x) => x.index === index)) w.resolve(socket);
      });
      return socket;
    },
    opened(index, timeoutMs = 5000) {
      const existing = sockets[index];
      if (existing) return Promise.resolve(existing);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`socket ${index} was never opened`)), timeoutMs);
        waiting.push({
          index,
          resolve: (s) => {
            clearTimeout(timer);
            resolve(s);
          },
        });
      });
    },
  };
}
