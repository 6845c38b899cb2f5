import { z } from "zod";

// E.164: a plus sign, a country code that does not start with 0, at most 15 digits in all.
const E164 = /^\+[1-9][0-9]{6,14}$/;

export const e164Schema = z
  .string()
  .regex(E164, { error: "must be an E.164 phone number such as +14155550123" });

/** The form the Cloud API expects in `to`: digits only. */
export function toProviderNumber(e164: string): string {
  return e164.slice(1);
}

/** Keeps the country-code side and the last two digits, so logs can be correlated without holding numbers. */
export function maskPhone(value: string): string {
  const digits = value.replace(/[^0-9]/g, "");
  if (digits.length < 6) return "***";
  return `+${digits.slice(0, 2)}${"*".repeat(digits.length - 4)}${digits.slice(-2)}`;
}
