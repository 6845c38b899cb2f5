import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import qrcodeTerminal from "qrcode-terminal";
import { mintToken } from "../auth/index.js";

// `wagate link <number>` (on the VM: `sudo wagate link sales`; here: `npm run link -- sales`): links a WhatsApp Web
// number from the terminal of the machine the gateway runs on. It mints a one-minute admin token with API_SECRET
// from the environment (never printed), asks the local gateway (127.0.0.1:PORT) for a link attempt, prints the QR
// code in the terminal (or the pairing code with --code <phone>), and waits until the phone linked or the attempt
// expired. The gateway's own port is loopback-only on the VM: this never goes through the internet.

export interface LinkIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

const USAGE = "usage: wagate link <number id or name> [--code <E.164 phone>]";
const POLL_MS = 2_000;

interface NumberView {
  id: string;
  name: string;
  transport: string;
  status: string;
  phone: string | null;
}

export async function linkCommand(
  argv: string[],
  env: Record<string, string | undefined>,
  io: LinkIo,
): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: { code: { type: "string" } }; allowPositionals: true }>>;
  try {
    parsed = parseArgs({
      args: argv,
      options: { code: { type: "string" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    io.err(`link: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const wanted = parsed.positionals[0];
  if (!wanted || parsed.positionals.length !== 1) {
    io.err(`link: name exactly one number\n${USAGE}\n`);
    return 2;
  }
  const secret = env.API_SECRET;
  if (!secret) {
    io.err("link: API_SECRET is not set (run it where the gateway runs: sudo wagate link <number>)\n");
    return 2;
  }
  const base = `http://127.0.0.1:${env.PORT ?? "8080"}`;
  const { token } = await mintToken({
    secret,
    sub: "operator-cli",
    scopes: ["admin"],
    ttlSeconds: 120,
    issuer: env.JWT_ISSUER ?? "wagate",
    audience: env.JWT_AUDIENCE ?? "wagate",
  });
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${base}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return {
      status: response.status,
      json: (await response.json().catch(() => ({}))) as Record<string, unknown>,
    };
  };

  let numbers: NumberView[];
  try {
    numbers = ((await call("GET", "/v1/numbers")).json.numbers as NumberView[] | undefined) ?? [];
  } catch {
    io.err(`link: the gateway does not answer on ${base}\n`);
    return 1;
  }
  const number = numbers.find((n) => n.id === wanted || n.name === wanted);
  if (!number) {
    io.err(`link: no number named ${wanted}; the numbers are: ${numbers.map((n) => n.name).join(", ")}\n`);
    return 1;
  }
  const request = parsed.values.code ? { method: "code", phone: parsed.values.code } : { method: "qr" };
  const answer = await call("POST", `/v1/numbers/${number.id}/link`, request);
  if (answer.status !== 202) {
    const error = answer.json.error as { code?: string; message?: string } | undefined;
    io.err(`link: ${error?.code ?? answer.status}: ${error?.message ?? "refused"}\n`);
    return 1;
  }
  const expiresAt = Date.parse(String(answer.json.expires_at));
  if (typeof answer.json.qr === "string") {
    const qr = await new Promise<string>((resolve) =>
      qrcodeTerminal.generate(answer.json.qr as string, { small: true }, resolve),
    );
    io.out(
      `${qr}\nScan with WhatsApp on the phone of ${number.name}: Settings → Linked devices → Link a device.\n`,
    );
  } else {
    io.out(
      `Pairing code for ${number.name}: ${String(answer.json.code)}\n` +
        "On the phone: Settings → Linked devices → Link a device → Link with phone number instead.\n",
    );
  }
  io.out(`The attempt ends at ${new Date(expiresAt).toISOString()}.\n`);
  for (;;) {
    await new Promise((r) => setTimeout(r, POLL_MS));
    const view = (await call("GET", `/v1/numbers/${number.id}`)).json as unknown as NumberView;
    if (view.status === "connected") {
      io.out(`linked: ${number.name} is ${view.phone ?? "connected"}\n`);
      return 0;
    }
    if (view.status === "unlinked" || Date.now() > expiresAt + POLL_MS) {
      io.err(`link: ${number.name} was not linked in time; run the command again\n`);
      return 1;
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  linkCommand(process.argv.slice(2), process.env, {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
  }).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`link: ${(error as Error).message}\n`);
      process.exit(1);
    },
  );
}
