import { isOurMessageId, type OutgoingMessage } from "../messages.js";
import type { Store } from "../store/store.js";
import type { SendOutcome } from "../transport/transport.js";

// A quoted reply (`context`) or a reaction may name our message id. Meta knows only its own ids, and ours gets
// one only once it is sent, possibly after the reply was accepted (both queued together, the quoted one still in
// flight). So the mapping happens here, right before sending: our id becomes the provider's id, and a reference
// to a message not yet sent waits for it. The route already refused unknown ids, so this costs one look-up for
// messages that name our id, and nothing for the others.

/** How long a message waits, at least, for the one it refers to to be sent. */
const REFERENCE_WAIT_MS = 1_000;

/**
 * Our ids of uploaded media (POST /v1/media answers UUIDs, stored with Meta's media id) → Meta's media id.
 * Wired to the media store; without it, media ids go to Meta as given.
 */
export interface UploadedMediaLookup {
  providerMediaId(id: string): Promise<string | undefined>;
}

export type ResolvedMessage =
  | { kind: "ready"; message: OutgoingMessage }
  | { kind: "wait"; outcome: SendOutcome };

type Mapping = { reference: { message_id: string; from_me: true } } | { outcome: SendOutcome };

async function mapOurId(id: string, where: string, store: Pick<Store, "getMessage">): Promise<Mapping> {
  const record = await store.getMessage(id);
  if (!record) {
    return {
      outcome: { kind: "permanent", code: "reference_unknown", message: `${where}: no such message` },
    };
  }
  if (record.status === "failed") {
    const message = `${where}: that message failed; it never reached the recipient`;
    return { outcome: { kind: "permanent", code: "reference_failed", message } };
  }
  // Not sent yet, or sent without the provider's id (its answer was cut off; a status webhook may bring it).
  if (!record.providerMessageId) {
    const message = `${where}: that message is not sent yet`;
    return {
      outcome: { kind: "retryable", code: "reference_not_sent", message, minDelayMs: REFERENCE_WAIT_MS },
    };
  }
  return { reference: { message_id: record.providerMessageId, from_me: true } };
}

export async function resolveReferences(
  message: OutgoingMessage,
  store: Pick<Store, "getMessage">,
): Promise<ResolvedMessage> {
  let resolved = message;
  if (resolved.context && isOurMessageId(resolved.context.message_id)) {
    const mapping = await mapOurId(resolved.context.message_id, "context.message_id", store);
    if ("outcome" in mapping) return { kind: "wait", outcome: mapping.outcome };
    resolved = { ...resolved, context: mapping.reference };
  }
  if (resolved.type === "reaction" && isOurMessageId(resolved.reaction.message_id)) {
    const mapping = await mapOurId(resolved.reaction.message_id, "reaction.message_id", store);
    if ("outcome" in mapping) return { kind: "wait", outcome: mapping.outcome };
    resolved = { ...resolved, reaction: { ...resolved.reaction, ...mapping.reference } };
  }
  return { kind: "ready", message: resolved };
}

type WithId = { id?: string | undefined };

/** Every media object of a message that may carry an id: the message's own, an interactive or template header's. */
function mediaObjects(message: OutgoingMessage): WithId[] {
  switch (message.type) {
    case "image":
      return [message.image];
    case "video":
      return [message.video];
    case "audio":
      return [message.audio];
    case "document":
      return [message.document];
    case "sticker":
      return [message.sticker];
    case "interactive": {
      const header = message.interactive.header as Record<string, unknown> | undefined;
      const media = header && header.type !== "text" ? (header[String(header.type)] as WithId) : undefined;
      return media ? [media] : [];
    }
    case "template":
      return (message.template.components ?? []).flatMap((component) =>
        component.type === "header"
          ? component.parameters.flatMap((p) =>
              p.type === "image"
                ? [p.image]
                : p.type === "video"
                  ? [p.video]
                  : p.type === "document"
                    ? [p.document]
                    : [],
            )
          : [],
      );
    default:
      return [];
  }
}

/** Whether a message names a medium uploaded here (POST /v1/media), whose id must be mapped to Meta's. */
export function namesUploadedMedia(message: OutgoingMessage): boolean {
  return mediaObjects(message).some((m) => m.id !== undefined && isOurMessageId(m.id));
}

/**
 * Replaces our ids of uploaded media by Meta's, right before sending. A copy is returned: the stored message keeps
 * our ids. An id of ours the media store does not know fails the message (it cannot be sent as it is).
 */
export async function resolveMedia(
  message: OutgoingMessage,
  lookup: UploadedMediaLookup | undefined,
): Promise<ResolvedMessage> {
  if (!lookup) return { kind: "ready", message };
  // Our media ids are UUIDs, like our message ids; Meta's are digits.
  if (!namesUploadedMedia(message)) return { kind: "ready", message };
  const copy = structuredClone(message);
  for (const media of mediaObjects(copy)) {
    if (media.id === undefined || !isOurMessageId(media.id)) continue;
    const providerId = await lookup.providerMediaId(media.id);
    if (!providerId) {
      const outcome = {
        kind: "permanent",
        code: "media_unknown",
        message: "no uploaded medium with this id",
      } as const;
      return { kind: "wait", outcome };
    }
    media.id = providerId;
  }
  return { kind: "ready", message: copy };
}
