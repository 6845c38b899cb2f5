/** The scopes of DESIGN.md; a token's `scope` claim is a space-separated subset. */
export const SCOPES = [
  "messages:send",
  "messages:read",
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
