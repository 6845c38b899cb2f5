import { readFile } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";

// `.local/stack.json`, written by `npm run local`: how to reach the local stack. Read by `smoke --local`.

const stackFileSchema = z.object({
  baseUrl: z.url({ protocol: /^https$/ }),
  httpUrl: z.url({ protocol: /^http$/ }).optional(),
  /** curl-style `host:port:address`, or a list of them. */
  resolve: z.union([z.string(), z.array(z.string())]).optional(),
  /** Path (relative to the file) or PEM of the CA that issued the local certificate. */
  caCert: z.string().optional(),
  adminToken: z.string().optional(),
});

export interface LocalStack {
  baseUrl: string;
  httpUrl?: string;
  resolve: string[];
  caPem?: string;
  token?: string;
}

export async function readLocalStack(path: string): Promise<LocalStack> {
  const text = await readFile(path, "utf8").catch(() => {
    throw new Error(`${path} not found: start the local stack first (npm run local)`);
  });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not JSON`);
  }
  const parsed = stackFileSchema.safeParse(raw, { reportInput: false });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${path}: ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "invalid"}`);
  }
  const s = parsed.data;
  let caPem: string | undefined;
  if (s.caCert?.includes("-----BEGIN")) caPem = s.caCert;
  else if (s.caCert)
    caPem = await readFile(isAbsolute(s.caCert) ? s.caCert : resolve(dirname(path), s.caCert), "utf8");
  return {
    baseUrl: s.baseUrl,
    httpUrl: s.httpUrl,
    resolve: s.resolve === undefined ? [] : Array.isArray(s.resolve) ? s.resolve : [s.resolve],
    caPem,
    token: s.adminToken,
  };
}
