import type {
  AnyMessageContent,
  AuthenticationCreds,
  AuthenticationState,
  ConnectionState,
  MiscMessageGenerationOptions,
  WAMessage,
  WAMessageKey,
  WAMessageUpdate,
} from "baileys";
import type { ILogger } from "./logger.js";

// The part of Baileys' socket the gateway uses, behind a small interface: the real one (baileys-socket.ts) in
// production, a fake that emits Baileys' own event shapes in the tests (WhatsApp's servers are not reachable here).

export interface WebSocketEvents {
  "connection.update": Partial<ConnectionState>;
  "creds.update": Partial<AuthenticationCreds>;
  "messages.upsert": { messages: WAMessage[]; type: "notify" | "append"; requestId?: string };
  "messages.update": WAMessageUpdate[];
}

export interface WebSocketLike {
  ev: {
    on<K extends keyof WebSocketEvents>(event: K, listener: (data: WebSocketEvents[K]) => void): void;
  };
  /** Set once the connection is open: `<digits>:<device>@s.whatsapp.net`. */
  user?: { id: string } | undefined;
  sendMessage(
    jid: string,
    content: AnyMessageContent,
    options?: MiscMessageGenerationOptions,
  ): Promise<{ key: { id?: string | null } } | undefined>;
  /** Read receipts (blue ticks) for received messages. */
  readMessages(keys: WAMessageKey[]): Promise<void>;
  /** An 8-character code the phone enters under Linked devices → Link with phone number. */
  requestPairingCode(phoneDigits: string): Promise<string>;
  logout(): Promise<void>;
  end(error: Error | undefined): void | Promise<void>;
}

export interface SocketOptions {
  auth: AuthenticationState;
  logger: ILogger;
}

export type SocketFactory = (options: SocketOptions) => Promise<WebSocketLike>;
