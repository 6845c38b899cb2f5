import type { IncomingMessage } from "node:http";
import { request } from "node:https";
import type { LookupFunction } from "node:net";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { checkWebhookTarget, type HostResolver, RefusedUrl, type UrlPolicy } from "../webhooks/ssrf.js";
import { checkedDownload } from "./checked-download.js";

// A medium a WhatsApp Web number sends by `link`: the Cloud API has Meta fetch links, but a web number's gateway
// fetches them itself, so the link goes through the same SSRF guard as webhook URLs (webhooks/ssrf.ts): https, every
// address the host resolves to public (or the host exempted by WEBHOOK_ALLOWED_HOSTS), and the connection made to
// the very address that was checked. Baileys gets the bytes as a stream and never fetches a URL itself. Redirects
// are not followed; the size is capped by the medium's kind while it streams.

export class LinkRefused extends Error {
  constructor(
    reason: string,
    /** Worth trying again later (the server failed or did not answer), or never (refused, 4xx). */
    readonly retryable: boolean,
  ) {
    super(reason);
    this.name = "LinkRefused";
  }
}

export interface LinkFetchOptions {
  policy: UrlPolicy;
  resolve: HostResolver;
  timeoutMs: number;
  /** Extra certificate authorities (tests' self-signed server); default: Node's. */
  ca?: string | undefined;
}

export interface FetchedMedium {
  /** The bytes as they arrive; errors with CheckFailed past `maxBytes`. */
  stream: Readable;
  /** The server's Content-Type, when it names a plain type/subtype. */
  contentType: string | undefined;
}

const PLAIN_TYPE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/;

export async function fetchMediaLink(
  link: string,
  maxBytes: number,
  subject: string,
  options: LinkFetchOptions,
): Promise<FetchedMedium> {
  let target: Awaited<ReturnType<typeof checkWebhookTarget>>;
  try {
    target = await checkWebhookTarget(
      link,
      { ...options.policy, allowHttp: false },
      options.resolve,
      subject,
    );
  } catch (error) {
    if (error instanceof RefusedUrl) throw new LinkRefused(`link ${error.message}`, false);
    throw error;
  }
  const pinned: LookupFunction = (_hostname, lookupOptions, callback) => {
    const { address, family } = target.address;
    if ((lookupOptions as { all?: boolean }).all) {
      (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [
        { address, family },
      ]);
    } else callback(null, address, family);
  };
  const response = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(target.url, {
      method: "GET",
      lookup: pinned,
      agent: false,
      headers: { "user-agent": "wagate-media/1", accept: "*/*" },
      ...(options.ca ? { ca: options.ca } : {}),
      timeout: options.timeoutMs,
    });
    req.on("response", resolve);
    req.on("timeout", () => req.destroy(new LinkRefused("the link's server did not answer in time", true)));
    req.on("error", (error) =>
      reject(
        error instanceof LinkRefused
          ? error
          : new LinkRefused("the link's server could not be reached", true),
      ),
    );
    req.end();
  });
  const status = response.statusCode ?? 0;
  if (status !== 200) {
    response.destroy();
    throw new LinkRefused(
      status >= 300 && status < 400
        ? `the link redirected (HTTP ${status}); redirects are not followed`
        : `the link answered HTTP ${status}`,
      status >= 500 || status === 429,
    );
  }
  const announced = Number(response.headers["content-length"]);
  if (Number.isFinite(announced) && announced > maxBytes) {
    response.destroy();
    throw new LinkRefused(`the link's medium is ${announced} bytes, over ${maxBytes}`, false);
  }
  const checked = checkedDownload({ maxBytes });
  pipeline(response, checked).catch(() => undefined);
  const type = response.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
  return { stream: checked, contentType: type && PLAIN_TYPE.test(type) ? type : undefined };
}
