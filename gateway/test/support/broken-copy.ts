import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

// A deliberately broken copy of a source module, to show that a test can fail (as infra/test/provision.test.ts
// and scripts/test/smoke.test.ts do with a broken unit and a weakened edge): the test's check runs against the
// copy and must fail there. The copy sits beside the original (a dot file, so its relative imports resolve and
// the compiler's globs skip it) and is removed afterwards. Each replacement must match: a source change that
// makes it miss fails loudly instead of silently testing an unbroken copy.

export async function withBrokenCopy<T, R = void>(
  sourceUrl: URL,
  replacements: ReadonlyArray<readonly [string, string]>,
  use: (module: T) => Promise<R>,
): Promise<R> {
  const original = sourceUrl.pathname;
  let source = readFileSync(original, "utf8");
  for (const [from, to] of replacements) {
    if (!source.includes(from)) throw new Error(`broken copy of ${basename(original)}: "${from}" not found`);
    source = source.replace(from, to);
  }
  const copy = join(dirname(original), `.broken-${randomBytes(4).toString("hex")}-${basename(original)}`);
  writeFileSync(copy, source);
  try {
    return await use((await import(copy)) as T);
  } finally {
    rmSync(copy, { force: true });
  }
}
