import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { guardedConsoleLine } from "../src/transport/web/console-guard.js";
import { quietBaileysLogger } from "../src/transport/web/logger.js";

// Nothing of a session reaches the logs: Baileys' logger gets a logger that drops every object, and libsignal's
// own console output keeps only plain strings.

const key = Buffer.alloc(32, 0x5a);
const session = { currentRatchet: { rootKey: key, ephemeralKeyPair: { privKey: key } }, indexInfo: {} };

describe("the web transport's logging", () => {
  it("gives Baileys a logger that prints no object, at any level, and only short plain warnings", () => {
    let output = "";
    const sink = new Writable({
      write(chunk, _enc, done) {
        output += String(chunk);
        done();
      },
    });
    const log = pino({ level: "trace" }, sink);
    const logger = quietBaileysLogger(log, "n1").child({ class: "signal" });
    logger.trace({ creds: { noiseKey: { private: key } } }, "creds");
    logger.debug({ session }, "decrypting");
    logger.info({ keys: [key] }, "uploading pre-keys");
    logger.warn({ session }, "closing session");
    logger.error({ creds: key }, "something failed");
    logger.warn(`state: ${JSON.stringify(session)}`);
    logger.warn("connection errored");
    expect(output).not.toContain(key.toString("base64"));
    expect(output).not.toContain("rootKey");
    expect(output).not.toContain("noiseKey");
    const lines = output
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { msg: string; numberId: string });
    expect(lines.map((l) => l.msg)).toEqual([
      "web: closing session",
      "web: something failed",
      "web: connection errored",
    ]);
    expect(lines.every((l) => l.numberId === "n1")).toBe(true);
  });

  it("lets libsignal's console print plain strings only (its 'Closing session:' dump is dropped)", () => {
    expect(guardedConsoleLine(["Closing session:", session])).toBeUndefined();
    expect(guardedConsoleLine(["Session error:Error: Bad MAC", new Error("Bad MAC")])).toBeUndefined();
    expect(guardedConsoleLine([key])).toBeUndefined();
    expect(guardedConsoleLine(["Decrypted message with closed session."])).toBe(
      "wagate: web: Decrypted message with closed session.\n",
    );
  });
});
