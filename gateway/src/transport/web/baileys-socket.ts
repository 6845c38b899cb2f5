import { loadBaileys } from "./baileys.js";
import type { SocketFactory, WebSocketLike } from "./socket.js";

/** The real socket: Baileys' multi-device client, with nothing printed and no history sync. */
export const baileysSocketFactory: SocketFactory = async ({ auth, logger }) => {
  const baileys = await loadBaileys();
  const socket = baileys.makeWASocket({
    auth,
    logger,
    browser: baileys.Browsers.ubuntu("wagate"),
    printQRInTerminal: false,
    markOnlineOnConnect: false,
    syncFullHistory: false,
    // Offline or blocked: the attempt fails in seconds, not after Baileys' default minute.
    connectTimeoutMs: 15_000,
    qrTimeout: 60_000,
  });
  return socket as unknown as WebSocketLike;
};
