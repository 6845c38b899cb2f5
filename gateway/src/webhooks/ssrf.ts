import { BlockList, isIP } from "node:net";
import { createBoundedResolver, LookupFailed, type ResolvedAddress } from "../dns/bounded-resolver.js";

// Keeps subscription URLs from reaching the gateway's own network: https only (http when the operator allows
// it), no credentials in the URL, and every address the host resolves to must be public. Checked at creation
// and again before each delivery, which then connects to the very address that was checked (see delivery.ts),
// so a DNS answer that changes in between cannot redirect it. The WHATWG URL parser already turns numeric
// tricks (2130706433, 0x7f.1, 0177.0.0.1) into dotted quads, and IPv4 embedded in IPv6 (mapped, compatible,
// NAT64, 6to4) is checked as the IPv4 address it carries.

export type { ResolvedAddress };

/**
 * Resolves a host name to all its addresses, on behalf of `subject` (whose lookups in flight are capped): the
 * gateway's is dns/bounded-resolver.ts; tests inject their own to control what a name resolves to.
 */
export type HostResolver = (hostname: string, subject: string) => Promise<ResolvedAddress[]>;

export interface UrlPolicy {
  allowHttp: boolean;
  /** Hosts (names or addresses, lower case) exempt from the address check: the operator's own receivers. */
  allowedHosts: readonly string[];
}

export class RefusedUrl extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "RefusedUrl";
  }
}

const forbidden = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8], // "this network", unspecified
  ["10.0.0.0", 8],
  ["100.64.0.0", 10], // carrier-grade NAT
  ["127.0.0.0", 8],
  ["169.254.0.0", 16], // link-local, cloud metadata 169.254.169.254
  ["172.16.0.0", 12],
  ["192.0.0.0", 24], // IETF protocol assignments
  ["192.0.2.0", 24], // documentation
  ["192.168.0.0", 16],
  ["198.18.0.0", 15], // benchmarking
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4], // multicast
  ["240.0.0.0", 4], // reserved, broadcast
] as const) {
  forbidden.addSubnet(net, prefix, "ipv4");
}
for (const [net, prefix] of [
  ["::", 128], // unspecified
  ["::1", 128], // loopback
  ["fc00::", 7], // unique local, includes the metadata address fd00:ec2::254
  ["fe80::", 10], // link-local
  ["fec0::", 10], // site-local (deprecated)
  ["ff00::", 8], // multicast
  ["2001:db8::", 32], // documentation
  ["100::", 64], // discard
  ["64:ff9b:1::", 48], // local-use NAT64 (RFC 8215): translated to addresses the operator chose, often private
  ["2001::", 32], // Teredo: tunnels to an IPv4 address hidden (inverted) in the last 32 bits
] as const) {
  forbidden.addSubnet(net, prefix, "ipv6");
}

/** The eight 16-bit groups of an IPv6 address (a trailing dotted quad allowed). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (quad?.[1]) {
    const parts = quad[1].split(".").map(Number);
    text = `${text.slice(0, -quad[1].length)}${(((parts[0] ?? 0) << 8) | (parts[1] ?? 0)).toString(16)}:${(((parts[2] ?? 0) << 8) | (parts[3] ?? 0)).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const missing = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array<string>(missing).fill("0"), ...right].map((g) => Number.parseInt(g || "0", 16));
}

function ipv4FromGroups(high: number, low: number): string {
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

/** The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any. */
function embeddedIpv4(groups: number[]): string | undefined {
  const g = (i: number) => groups[i] ?? 0;
  const zeros = (from: number, to: number) => groups.slice(from, to).every((x) => x === 0);
  if (zeros(0, 5) && g(5) === 0xffff) return ipv4FromGroups(g(6), g(7)); // ::ffff:a.b.c.d
  if (zeros(0, 6) && (g(6) !== 0 || g(7) > 1)) return ipv4FromGroups(g(6), g(7)); // ::a.b.c.d
  if (zeros(0, 4) && g(4) === 0xffff && g(5) === 0) return ipv4FromGroups(g(6), g(7)); // ::ffff:0:a.b.c.d
  if (g(0) === 0x64 && g(1) === 0xff9b && zeros(2, 6)) return ipv4FromGroups(g(6), g(7)); // NAT64
  if (g(0) === 0x2002) return ipv4FromGroups(g(1), g(2)); // 6to4
  return undefined;
}

/** True when a delivery must never connect to `address`. */
export function isForbiddenAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return forbidden.check(address, "ipv4");
  if (family !== 6) return true;
  const groups = ipv6Groups(address);
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return true;
  const v4 = embeddedIpv4(groups);
  if (v4 !== undefined && forbidden.check(v4, "ipv4")) return true;
  const canonical = groups.map((g) => g.toString(16)).join(":");
  return forbidden.check(canonical, "ipv6");
}

export interface CheckedTarget {
  url: URL;
  /** Host name without IPv6 brackets, lower case. */
  hostname: string;
  /** The checked address to connect to. */
  address: ResolvedAddress;
}

/** Parses and checks the URL's form; throws RefusedUrl. */
export function parseWebhookUrl(raw: string, policy: UrlPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new RefusedUrl("is not a valid URL");
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && policy.allowHttp)) {
    throw new RefusedUrl(policy.allowHttp ? "must be an http(s) URL" : "must be an https URL");
  }
  if (url.username || url.password) throw new RefusedUrl("must not contain credentials");
  if (url.hash) throw new RefusedUrl("must not contain a fragment");
  return url;
}

/**
 * Resolves the URL's host and checks every address; resolves with the one to connect to. Throws RefusedUrl
 * when the host is refused or does not resolve.
 */
export async function checkWebhookTarget(
  raw: string,
  policy: UrlPolicy,
  resolve: HostResolver,
  subject: string,
): Promise<CheckedTarget> {
  const url = parseWebhookUrl(raw, policy);
  const hostname = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const allowed = policy.allowedHosts.includes(hostname);
  const literal = isIP(hostname);
  let addresses: ResolvedAddress[];
  if (literal !== 0) {
    addresses = [{ address: hostname, family: literal === 6 ? 6 : 4 }];
  } else {
    try {
      addresses = await resolve(hostname, subject);
    } catch (error) {
      // A lookup that timed out or was refused for load says so: the URL may be fine.
      throw new RefusedUrl(error instanceof LookupFailed ? error.message : "host does not resolve");
    }
    if (addresses.length === 0) throw new RefusedUrl("host does not resolve");
  }
  if (!allowed && addresses.some((a) => isForbiddenAddress(a.address))) {
    throw new RefusedUrl("resolves to a loopback, private, link-local, multicast or reserved address");
  }
  return { url, hostname, address: addresses[0] as ResolvedAddress };
}

/**
 * The gateway's resolver for webhook hosts: c-ares with a deadline of half the delivery timeout (the lookup and
 * the request then fit in the delivery's lease), at most 4 lookups in flight per subject. `servers`: name
 * servers other than the system's (tests).
 */
export function webhookHostResolver(
  config: { WEBHOOK_TIMEOUT_MS: number },
  servers?: readonly string[],
): HostResolver {
  const resolver = createBoundedResolver({
    deadlineMs: Math.max(50, Math.floor(config.WEBHOOK_TIMEOUT_MS / 2)),
    ...(servers ? { servers } : {}),
  });
  return (hostname, subject) => resolver.resolve(hostname, subject);
}

/** The operator's URL policy from the configuration. */
export function webhookUrlPolicy(config: {
  WEBHOOK_ALLOW_HTTP: "true" | "false";
  WEBHOOK_ALLOWED_HOSTS: string[];
}): UrlPolicy {
  return { allowHttp: config.WEBHOOK_ALLOW_HTTP === "true", allowedHosts: config.WEBHOOK_ALLOWED_HOSTS };
}
