import type { Config } from "../config.js";
import type { Sealer } from "../crypto/sealer.js";
import { ApiError } from "../http/errors.js";
import { numberCredentialAssociatedData } from "../numbers/sealing.js";
import type { NumbersStore } from "../store/numbers.js";
import type { CloudAccount } from "./graph-media.js";

// Which Meta account a medium goes through, by the number it belongs to: the default number (WHATSAPP_*), a cloud
// number of the registry (its sealed access token opened for this request only), or none: in sandbox mode
// nothing leaves the machine, and WhatsApp Web numbers have no Graph API (their inbound media are fetched from
// WhatsApp's media servers: media/web-media.ts).

export type MediaAccount = { kind: "cloud"; account: CloudAccount } | { kind: "sandbox" };

export function mediaAccountFor(
  config: Config,
  numbers: NumbersStore,
  sealer: Sealer,
  numberId: string | null,
  /** How messages name the number: `from` for an upload, the medium's number for a download. */
  field: string,
): MediaAccount {
  if (numberId === null) {
    if (config.WHATSAPP_TRANSPORT === "sandbox") return { kind: "sandbox" };
    // loadConfig guarantees both for the cloud transport.
    return {
      kind: "cloud",
      account: {
        phoneNumberId: config.WHATSAPP_PHONE_NUMBER_ID as string,
        accessToken: config.WHATSAPP_ACCESS_TOKEN as string,
      },
    };
  }
  const number = numbers.cachedNumber(numberId);
  if (!number) throw new ApiError(422, "unknown_number", `${field}: no such number`);
  if (number.transport === "web") {
    throw new ApiError(
      422,
      "media_needs_cloud",
      `${field}: number ${number.name} is a WhatsApp Web number; uploads and media messages go through cloud numbers only for now`,
    );
  }
  if (config.WHATSAPP_TRANSPORT === "sandbox") return { kind: "sandbox" };
  if (!number.phoneNumberId || !number.credential)
    throw new ApiError(422, "number_misconfigured", `number ${number.name} has no credentials`);
  let accessToken: string;
  try {
    accessToken = sealer.open(number.credential, numberCredentialAssociatedData(number.id));
  } catch {
    throw new ApiError(
      422,
      "credential_unopenable",
      `the access token of number ${number.name} cannot be opened with API_SECRET; set it again (PATCH)`,
    );
  }
  return { kind: "cloud", account: { phoneNumberId: number.phoneNumberId, accessToken } };
}
