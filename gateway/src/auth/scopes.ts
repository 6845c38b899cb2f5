/** The scopes of DESIGN.md; a token's `scope` claim is a space-separated subset. */
export const SCOPES = [
  "messages:send",
  "messages:read",
  "inbox",
  "otp",
  "broadcasts",
  "replies",
  "webhooks",
  "inbox",
  "admin",
] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** Scopes another scope includes: an `admin` token reads the inbox without also carrying `inbox`. */
const IMPLIED_BY: Partial<Record<Scope, readonly Scope[]>> = { inbox: ["admin"] };

/** Whether a token's scopes grant `scope`, itself or through a scope that implies it. */
export function grants(scopes: ReadonlySet<string>, scope: Scope): boolean {
  return scopes.has(scope) || (IMPLIED_BY[scope] ?? []).some((s) => scopes.has(s));
}
