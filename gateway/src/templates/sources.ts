import type { Config } from "../config.js";
import type { Sealer } from "../crypto/sealer.js";
import { numberCredentialAssociatedData } from "../numbers/sealing.js";
import type { NumbersStore } from "../store/numbers.js";
import type { TemplateSource } from "./graph-templates.js";

// Where a number's templates are read: its WhatsApp Business Account (WABA) id and access token. The default
// number's come from WHATSAPP_WABA_ID and WHATSAPP_ACCESS_TOKEN, a registered cloud number's from the registry
// (`cloud.waba_id`, its sealed token opened only when a fetch starts). With the sandbox transport nothing goes to
// Meta, so there is nothing to read.

export type TemplateSourceLookup =
  | {
      kind: "source";
      /** Changes when the number's settings change, so a cached list is never kept across a new WABA or token. */
      version: string;
      open(): TemplateSource;
    }
  | { kind: "none"; reason: string };

export function templateSources(
  config: Config,
  numbers: NumbersStore,
  sealer: Sealer,
): (numberId: string | undefined) => TemplateSourceLookup {
  const baseUrl = config.GRAPH_API_BASE_URL;
  return (numberId) => {
    if (config.WHATSAPP_TRANSPORT === "sandbox")
      return { kind: "none", reason: "the sandbox transport sends nothing to Meta and has no templates" };
    if (numberId === undefined) {
      const wabaId = config.WHATSAPP_WABA_ID;
      const accessToken = config.WHATSAPP_ACCESS_TOKEN;
      if (!wabaId || !accessToken)
        return { kind: "none", reason: "the default number has no WABA id: set WHATSAPP_WABA_ID" };
      return { kind: "source", version: `default:${wabaId}`, open: () => ({ baseUrl, wabaId, accessToken }) };
    }
    const number = numbers.cachedNumber(numberId);
    if (!number) return { kind: "none", reason: "no such number" };
    if (number.transport !== "cloud")
      return { kind: "none", reason: `number ${number.name} is a web number: WhatsApp Web has no templates` };
    const { wabaId, credential } = number;
    if (!wabaId)
      return {
        kind: "none",
        reason: `number ${number.name} has no cloud.waba_id: set it with PATCH /v1/numbers/${number.id}`,
      };
    if (!credential) return { kind: "none", reason: `number ${number.name} has no access token` };
    return {
      kind: "source",
      version: `${number.id}:${number.updatedAt}`,
      open: () => ({
        baseUrl,
        wabaId,
        accessToken: sealer.open(credential, numberCredentialAssociatedData(number.id)),
      }),
    };
  };
}
