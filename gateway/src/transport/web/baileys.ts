// Baileys is loaded only when a web number needs it: its protocol buffers cost tens of megabytes and a second of
// start-up that a gateway without web numbers should not pay.

export type BaileysModule = typeof import("baileys");

let loading: Promise<BaileysModule> | undefined;

export function loadBaileys(): Promise<BaileysModule> {
  loading ??= import("baileys");
  return loading;
}
