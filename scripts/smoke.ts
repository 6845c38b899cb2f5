import { readFile } from "node:fs/promises";
import { text } from "node:stream/consumers";
import { intFlag, parseCli, runCommand, stringFlag, UsageError } from "./ops/cli.js";
import { readLocalStack } from "./ops/local-stack-file.js";
import { CHECK_NAMES, formatResult, runSmoke, type SmokeOptions } from "./ops/smoke-checks.js";

const USAGE = `Usage: npm run smoke -- <https://host[:port]> [options]
       npm run smoke -- --local

Checks a deployed (or the local) wagate edge the way an attacker and a client see it, one line per check:
${CHECK_NAMES.map((n) => `  ${n}`).join("\n")}

Options:
  --local               read the URL, CA, address and admin token from .local/stack.json (npm run local)
  --local-file <path>   another stack file (default: .local/stack.json)
  --http-url <url>      the plain-HTTP entry that must redirect (default: http://<host>)
  --resolve <h:p:addr>  connect to addr for host:port, like curl (test a stack before its DNS)
  --ca <file>           trust this CA (PEM) instead of the system's, e.g. Let's Encrypt's staging roots
  --token-file <file>   a token (JWT) for the "token accepted" check; "-" reads it from stdin.
                        Or set WAGATE_TOKEN. Never on the command line: ps and CI logs show it.
  --skip <names>        comma-separated checks not to run (e.g. waf-blocks-sqli when the WAF is off)
  --burst-max <n>       most requests the rate-limit check sends (default: 300)
  --concurrency <n>     requests in flight during that burst (default: 10)
  --min-cert-days <n>   the certificate must stay valid this long (default: 7)
  --timeout <ms>        per request (default: 10000)
  --json                print the results as JSON
  -h, --help            this help

The rate-limit check stops at the first 429, so it leaves at most --concurrency 429s in the edge's log (fail2ban
bans a client after more). Exit code: 0 when every check passed or was skipped, 1 when one failed, 2 bad usage.`;

function parseResolve(spec: string, host: string, port: number): string {
  const m = /^([^:]+):(\d+):(\[[0-9a-fA-F:.]+\]|[0-9.]+)$/.exec(spec);
  if (!m) throw new UsageError(`--resolve must be host:port:address, got ${spec}`);
  if (m[1] !== host || Number(m[2]) !== port)
    throw new UsageError(`--resolve ${spec} does not match the URL's host:port`);
  return (m[3] as string).replace(/^\[|\]$/g, "");
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, {
    help: { type: "boolean", short: "h" },
    local: { type: "boolean" },
    "local-file": { type: "string" },
    "http-url": { type: "string" },
    resolve: { type: "string" },
    ca: { type: "string" },
    "token-file": { type: "string" },
    skip: { type: "string" },
    "burst-max": { type: "string" },
    concurrency: { type: "string" },
    "min-cert-days": { type: "string" },
    timeout: { type: "string" },
    json: { type: "boolean" },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const local = values.local || values["local-file"] !== undefined;
  if (local && positionals.length > 0) throw new UsageError("give either a URL or --local, not both");
  if (!local && positionals.length !== 1)
    throw new UsageError("give the base URL (https://host[:port]) or --local");

  const stack = local
    ? await readLocalStack(stringFlag(values["local-file"]) ?? ".local/stack.json")
    : undefined;
  const url = stack?.baseUrl ?? (positionals[0] as string);
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(url);
  } catch {
    throw new UsageError(`not a URL: ${url}`);
  }
  if (parsedUrl.protocol !== "https:") throw new UsageError("the URL must start with https://");
  const port = parsedUrl.port ? Number(parsedUrl.port) : 443;
  const resolveSpec = stringFlag(values.resolve) ?? stack?.resolve[0];
  const address = resolveSpec ? parseResolve(resolveSpec, parsedUrl.hostname, port) : undefined;

  const caFile = stringFlag(values.ca);
  const ca = caFile
    ? await readFile(caFile, "utf8").catch(() => Promise.reject(new Error(`cannot read --ca ${caFile}`)))
    : stack?.caPem;
  const tokenFile = stringFlag(values["token-file"]);
  let token: string | undefined = process.env.WAGATE_TOKEN || stack?.token;
  if (tokenFile === "-") token = await text(process.stdin);
  else if (tokenFile)
    token = await readFile(tokenFile, "utf8").catch(() =>
      Promise.reject(new Error(`cannot read --token-file ${tokenFile}`)),
    );
  token = token?.trim() || undefined;

  const skip = (stringFlag(values.skip) ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const name of skip) {
    if (!(CHECK_NAMES as readonly string[]).includes(name))
      throw new UsageError(`--skip: unknown check ${name}`);
  }
  const options: SmokeOptions = {
    url: `${parsedUrl.protocol}//${parsedUrl.host}`,
    httpUrl: stringFlag(values["http-url"]) ?? stack?.httpUrl,
    address,
    ca,
    token,
    skip,
    burstMax: intFlag(values["burst-max"], "burst-max", 300, 1, 100_000),
    concurrency: intFlag(values.concurrency, "concurrency", 10, 1, 100),
    minCertDays: intFlag(values["min-cert-days"], "min-cert-days", 7, 0, 3650),
    timeoutMs: intFlag(values.timeout, "timeout", 10_000, 100, 600_000),
  };
  const results = await runSmoke(options);
  const failed = results.filter((r) => r.status === "fail").length;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ url: options.url, passed: failed === 0, results }, null, 2)}\n`);
  } else {
    for (const r of results) process.stdout.write(`${formatResult(r)}\n`);
    const passed = results.filter((r) => r.status === "pass").length;
    const skipped = results.length - passed - failed;
    process.stdout.write(`smoke ${options.url}: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
  return failed === 0 ? 0 : 1;
}

runCommand("smoke", () => main(process.argv.slice(2)));
