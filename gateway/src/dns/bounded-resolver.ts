import { promises as dns } from "node:dns";
import { isIP, type LookupFunction } from "node:net";

// Host lookups made on a user's behalf (webhook URLs at creation and before each delivery, the Graph API host for
// new connections), bounded in time and in number. `dns.lookup` runs getaddrinfo on libuv's thread pool (4
// threads, shared with fs and crypto) and has no timeout: a name server that never answers held a thread for
// 10 s per try, so eight lookups starved every other lookup and file operation of the process. This asks the
// name servers itself through c-ares (`dns.promises.Resolver`: sockets on the event loop, no pool thread) with a
// per-try timeout and a number of tries, and gives up at a deadline in any case (cancelling its queries).
// Lookups in flight are capped per subject (a token `sub`, or a component) and in total: past the cap, a lookup
// is refused at once instead of queueing behind the others.
//
// What getaddrinfo did that this does not: /etc/hosts and nsswitch are not consulted, and search domains are not
// appended (webhook hosts are public names). `localhost` and names under `.localhost` answer 127.0.0.1 and ::1
// without a query (RFC 6761), as the system resolver did; the SSRF check then refuses them unless the operator
// allowed the name. IP literals are returned as they are.

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export class LookupFailed extends Error {
  constructor(
    readonly reason: "timeout" | "busy" | "not_found",
    message: string,
  ) {
    super(message);
    this.name = "LookupFailed";
  }
}

export interface BoundedResolverOptions {
  /** The whole lookup (A and AAAA, every try) ends by then. */
  deadlineMs: number;
  /** c-ares tries per name server (each with its own timeout, a share of the deadline). */
  tries?: number;
  maxInFlightPerSubject?: number;
  maxInFlight?: number;
  /** Name servers (`ip` or `ip:port`); default: the system's (/etc/resolv.conf). */
  servers?: readonly string[];
}

export interface BoundedResolver {
  resolve(hostname: string, subject: string): Promise<ResolvedAddress[]>;
  /** A `lookup` for `net`/`http` connections made on behalf of `subject`. */
  lookupFor(subject: string): LookupFunction;
}

const LOOPBACK: readonly ResolvedAddress[] = [
  { address: "127.0.0.1", family: 4 },
  { address: "::1", family: 6 },
];

export function createBoundedResolver(options: BoundedResolverOptions): BoundedResolver {
  const tries = options.tries ?? 2;
  const perSubject = options.maxInFlightPerSubject ?? 4;
  const total = options.maxInFlight ?? 64;
  const inFlight = new Map<string, number>();
  let inFlightTotal = 0;

  async function query(hostname: string): Promise<ResolvedAddress[]> {
    // One channel per lookup, so that cancelling it at the deadline cancels this lookup's queries only.
    const resolver = new dns.Resolver({
      timeout: Math.max(50, Math.floor(options.deadlineMs / (tries + 1))),
      tries,
    });
    if (options.servers) resolver.setServers([...options.servers]);
    const found: ResolvedAddress[] = [];
    const errors: Array<string | undefined> = [];
    const ask = (family: 4 | 6) =>
      (family === 4 ? resolver.resolve4(hostname) : resolver.resolve6(hostname)).then(
        (addresses) => {
          for (const address of addresses) found.push({ address, family });
        },
        (error: NodeJS.ErrnoException) => {
          errors.push(error.code);
        },
      );
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"deadline">((resolve) => {
      timer = setTimeout(() => resolve("deadline"), options.deadlineMs);
    });
    const answered = await Promise.race([Promise.all([ask(4), ask(6)]), deadline]);
    clearTimeout(timer);
    if (answered === "deadline") resolver.cancel();
    // Whatever arrived in time is used: a server that answers A and drops AAAA still resolves.
    if (found.length > 0) return found;
    if (answered === "deadline" || errors.includes("ETIMEOUT") || errors.includes("ECANCELLED")) {
      throw new LookupFailed("timeout", `host lookup did not answer within ${options.deadlineMs} ms`);
    }
    throw new LookupFailed("not_found", "host does not resolve");
  }

  async function resolve(name: string, subject: string): Promise<ResolvedAddress[]> {
    const hostname = name.toLowerCase().replace(/\.$/, "");
    const literal = isIP(hostname);
    if (literal !== 0) return [{ address: hostname, family: literal === 6 ? 6 : 4 }];
    if (hostname === "localhost" || hostname.endsWith(".localhost")) return [...LOOPBACK];
    const mine = inFlight.get(subject) ?? 0;
    if (mine >= perSubject || inFlightTotal >= total) {
      throw new LookupFailed("busy", "too many host lookups in flight; try again shortly");
    }
    inFlight.set(subject, mine + 1);
    inFlightTotal++;
    try {
      return await query(hostname);
    } finally {
      inFlightTotal--;
      const left = (inFlight.get(subject) ?? 1) - 1;
      if (left === 0) inFlight.delete(subject);
      else inFlight.set(subject, left);
    }
  }

  return {
    resolve,
    lookupFor(subject) {
      return ((hostname, lookupOptions, callback) => {
        const wanted = typeof lookupOptions === "object" ? lookupOptions : {};
        resolve(hostname, subject).then(
          (addresses) => {
            const usable = wanted.family ? addresses.filter((a) => a.family === wanted.family) : addresses;
            const first = usable[0];
            if (!first) {
              callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), "", 4);
            } else if (wanted.all) {
              (callback as unknown as (e: null, a: ResolvedAddress[]) => void)(null, usable);
            } else {
              callback(null, first.address, first.family);
            }
          },
          (error: unknown) => {
            // getaddrinfo's codes: a lookup that timed out or was refused for load is a temporary failure
            // (EAI_AGAIN). Either way no connection was made: the Graph transport counts it as "not sent".
            const code =
              error instanceof LookupFailed && error.reason === "not_found" ? "ENOTFOUND" : "EAI_AGAIN";
            callback(
              Object.assign(error instanceof Error ? error : new Error(String(error)), { code }),
              "",
              4,
            );
          },
        );
      }) as LookupFunction;
    },
  };
}
