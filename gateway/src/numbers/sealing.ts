import type { SealedSecretOwner } from "../store/store.js";
import { secretAssociatedData } from "../webhooks/dispatcher.js";

// The associated data each sealed value is bound to (AES-GCM, crypto/sealer.ts): a value copied to another row —
// another number, another session key — does not open there.

/** A cloud number's access token. */
export const numberCredentialAssociatedData = (numberId: string) => `number-credential:${numberId}`;

/** One value of a web number's session: "creds" or "<signal key type>:<key id>". */
export const sessionKeyAssociatedData = (numberId: string, key: string) =>
  `number-session:${numberId}:${key}`;

/** What a web number needs to fetch an inbound medium again (media/web-media.ts), by the medium's row id. */
export const mediaSourceAssociatedData = (mediaRowId: string) => `media-source:${mediaRowId}`;

/** What the gateway re-seals at start during an API_SECRET rotation, by owner. */
export function sealedOwnerAssociatedData(owner: SealedSecretOwner): string {
  switch (owner.kind) {
    case "message":
      return owner.id;
    case "webhook_subscription":
      return secretAssociatedData(owner.id);
    case "number_credential":
      return numberCredentialAssociatedData(owner.id);
    case "number_session":
      return sessionKeyAssociatedData(owner.id, owner.key);
    case "media_source":
      return mediaSourceAssociatedData(owner.id);
  }
}
