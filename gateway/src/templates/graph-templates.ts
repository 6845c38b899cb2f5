import { z } from "zod";

// Meta's `GET /{waba-id}/message_templates`: every template of a WhatsApp Business Account, page by page. Only the
// fields the gateway checks a send against are asked for. Meta's answer is input like any other: parsed with zod,
// loose where Meta adds fields over time, and bounded (pages, size) so a misbehaving server cannot hold us.

const FIELDS = "name,language,status,category,components";
const PAGE_SIZE = 100;
/** A WABA holds at most 250 templates (6,000 for a verified business): 60 pages of 100 cover every account. */
const MAX_PAGES = 60;
const MAX_PAGE_BYTES = 4 * 1024 * 1024;
const PAGE_TIMEOUT_MS = 10_000;

const button = z.looseObject({
  type: z.string().max(64),
  text: z.string().max(4096).optional(),
  url: z.string().max(4096).optional(),
  otp_type: z.string().max(64).optional(),
});

const component = z.looseObject({
  type: z.string().max(64),
  format: z.string().max(64).optional(),
  text: z.string().max(65_536).optional(),
  buttons: z.array(button).max(100).optional(),
});

export const graphTemplate = z.looseObject({
  name: z.string().min(1).max(512),
  language: z.string().min(1).max(32),
  status: z.string().max(64),
  category: z.string().max(64).optional(),
  components: z.array(component).max(20).default([]),
});
export type GraphTemplate = z.infer<typeof graphTemplate>;
export type GraphTemplateComponent = z.infer<typeof component>;

const page = z.looseObject({
  data: z.array(graphTemplate).max(1000),
  paging: z
    .looseObject({
      cursors: z.looseObject({ after: z.string().max(2048).optional() }).optional(),
      next: z.string().optional(),
    })
    .optional(),
});

export interface TemplateSource {
  /** Includes the API version, e.g. https://graph.facebook.com/v21.0 */
  baseUrl: string;
  wabaId: string;
  accessToken: string;
}

/** Why templates could not be read; `message` never holds the token or Meta's full answer. */
export class TemplateFetchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TemplateFetchError";
  }
}

async function readPage(url: URL, accessToken: string, signal: AbortSignal): Promise<z.infer<typeof page>> {
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { authorization: `Bearer ${accessToken}`, accept: "application/json" },
      // Never follow a redirect with the token attached.
      redirect: "error",
      signal: AbortSignal.any([signal, AbortSignal.timeout(PAGE_TIMEOUT_MS)]),
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: unknown } }).cause?.code;
    throw new TemplateFetchError(
      `the Graph API could not be reached (${typeof cause === "string" ? cause : (error as Error).name})`,
    );
  }
  const declared = Number(response.headers.get("content-length") ?? 0);
  if (declared > MAX_PAGE_BYTES) {
    await response.body?.cancel();
    throw new TemplateFetchError("the Graph API answered with a page that is too large");
  }
  const text = await response.text();
  if (text.length > MAX_PAGE_BYTES)
    throw new TemplateFetchError("the Graph API answered with a page that is too large");
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new TemplateFetchError(`the Graph API answered HTTP ${response.status} without JSON`);
  }
  if (!response.ok) {
    const code = (body as { error?: { code?: unknown } })?.error?.code;
    throw new TemplateFetchError(
      `the Graph API refused to list templates (HTTP ${response.status}${typeof code === "number" ? `, error ${code}` : ""})`,
    );
  }
  const parsed = page.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TemplateFetchError(
      `the Graph API's template list is not in the expected shape (${issue?.path.join(".") || "body"}: ${issue?.message})`,
    );
  }
  return parsed.data;
}

/**
 * All templates of the account, whatever their status (a send names the status it is refused for). Pages are
 * followed with the `after` cursor on our own URL rather than Meta's `paging.next`, so the token only ever goes to
 * the configured Graph API host.
 */
export async function fetchTemplates(source: TemplateSource, signal: AbortSignal): Promise<GraphTemplate[]> {
  const templates: GraphTemplate[] = [];
  let after: string | undefined;
  for (let n = 0; n < MAX_PAGES; n++) {
    const url = new URL(`${source.baseUrl}/${encodeURIComponent(source.wabaId)}/message_templates`);
    url.searchParams.set("fields", FIELDS);
    url.searchParams.set("limit", String(PAGE_SIZE));
    if (after !== undefined) url.searchParams.set("after", after);
    const result = await readPage(url, source.accessToken, signal);
    templates.push(...result.data);
    after = result.paging?.cursors?.after;
    if (!result.paging?.next || after === undefined || result.data.length === 0) return templates;
  }
  throw new TemplateFetchError(`the Graph API's template list has more than ${MAX_PAGES} pages`);
}
