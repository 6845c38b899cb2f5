/** The scopes of DESIGN.md; a token's `scope` claim is a space-separated subset. */
export const SCOPES = [
  "messages:send",
  "messages:read",
  "inbox",
  "otp",
  "broadcasts",
  "replies",
  "webhooks",
  "admin",
] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Scopes a token holds without naming them: `admin` reads the inbox (inbound messages and their media). */
const IMPLIED_BY: Partial<Record<Scope, readonly Scope[]>> = { inbox: ["admin"] };

/** Whether a token with these scopes may use a route that needs `scope`. */
export function grants(scopes: ReadonlySet<string>, scope: Scope): boolean {
  return scopes.has(scope) || (IMPLIED_BY[scope] ?? []).some((s) => scopes.has(s));
}
