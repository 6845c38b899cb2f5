// Baileys is loaded only when a web number needs it: its protocol buffers cost tens of megabytes and a second of
// start-up that a gateway without web numbers should not pay.

import { installConsoleGuard } from "./console-guard.js";

export type BaileysModule = typeof import("baileys");

/** Node caches the module: the first call loads it, the others get the same one. */
export function loadBaileys(): Promise<BaileysModule> {
  installConsoleGuard();
  return import("baileys");
}
