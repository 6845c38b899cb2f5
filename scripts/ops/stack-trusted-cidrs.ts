import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parse } from "yaml";

// `wagate:trustedCidrs` of a stack, read from its Pulumi.<stack>.yaml in the checkout: the ranges the operator
// trusts (its own offices, monitoring), which no printed ban command may name.

const REPO_ROOT = resolve(import.meta.dirname, "../..");

export async function stackTrustedCidrs(stack: string, root = REPO_ROOT): Promise<string[]> {
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(stack))
    throw new Error(`--stack: ${JSON.stringify(stack)} is not a stack name`);
  const file = join(root, `Pulumi.${stack}.yaml`);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new Error(`--stack: no ${file}`);
  }
  const config = (parse(text) as { config?: Record<string, unknown> } | null)?.config ?? {};
  const value = config["wagate:trustedCidrs"];
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string"))
    throw new Error(`--stack: wagate:trustedCidrs in ${file} is not a list of CIDR blocks`);
  return value;
}
