import { describe, expect, it } from "vitest";
import type { OutgoingMessage } from "../src/messages.js";
import { resolveMedia } from "../src/queue/references.js";

// Our ids of uploaded media (POST /v1/media answers UUIDs) become Meta's media ids right before sending, wherever
// a message carries a medium: its own object, an interactive header, a template's header parameter.

const ours = "01890a5d-ac96-774b-bcce-b302099a8057";
const lookup = {
  providerMediaId: async (id: string) => (id === ours ? "1037543291543636" : undefined),
};
const to = "+14155550123";

describe("uploaded media ids mapped to Meta's", () => {
  it.each<[string, OutgoingMessage, unknown]>([
    [
      "an image",
      { type: "image", to, image: { id: ours, caption: "c" } },
      { id: "1037543291543636", caption: "c" },
    ],
    ["a sticker", { type: "sticker", to, sticker: { id: ours } }, { id: "1037543291543636" }],
  ])("%s", async (_name, message, expected) => {
    const resolved = await resolveMedia(message, lookup);
    expect(resolved.kind).toBe("ready");
    if (resolved.kind !== "ready") return;
    expect((resolved.message as unknown as Record<string, unknown>)[message.type]).toEqual(expected);
    // The stored message keeps our id.
    expect(JSON.stringify(message)).toContain(ours);
  });

  it("in an interactive header and a template header", async () => {
    const interactive = await resolveMedia(
      {
        type: "interactive",
        to,
        interactive: {
          type: "button",
          header: { type: "video", video: { id: ours } },
          body: { text: "b" },
          action: { buttons: [{ type: "reply", reply: { id: "a", title: "A" } }] },
        },
      },
      lookup,
    );
    expect(JSON.stringify(interactive)).toContain('"video":{"id":"1037543291543636"}');
    const template = await resolveMedia(
      {
        type: "template",
        to,
        template: {
          name: "t",
          language: "en_US",
          components: [
            { type: "header", parameters: [{ type: "document", document: { id: ours, filename: "a.pdf" } }] },
          ],
        },
      },
      lookup,
    );
    expect(JSON.stringify(template)).toContain('"document":{"id":"1037543291543636","filename":"a.pdf"}');
  });

  it("leaves Meta's ids and links alone, and fails an id of ours nobody uploaded", async () => {
    const meta: OutgoingMessage = { type: "audio", to, audio: { id: "998877" } };
    expect(await resolveMedia(meta, lookup)).toEqual({ kind: "ready", message: meta });
    const unknown = await resolveMedia(
      { type: "image", to, image: { id: "01890a5d-ac96-774b-bcce-b302099a0000" } },
      lookup,
    );
    expect(unknown).toMatchObject({ kind: "wait", outcome: { kind: "permanent", code: "media_unknown" } });
  });
});
