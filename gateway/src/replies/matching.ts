import { RE2JS } from "re2js";

// Which rule answers an inbound text. Regexes run on re2js, a port of RE2: matching is linear in the input
// (no backtracking), so a pattern such as `(a+)+$` cannot hang the process, and RE2 refuses what it cannot run
// in linear time (backreferences, lookaround) at creation.

export const MAX_PATTERN_LENGTH = 512;
/**
 * Regexes see the first 4,096 characters of a message (a business text message's own limit). Linear time is
 * still time: a user may send 64 KiB, and every regex rule of every sub runs on it.
 */
export const MAX_REGEX_INPUT = 4096;
/**
 * RE2's cost is input length × program size (instructions of the compiled program): measured here, 75–250 ns
 * per instruction per character, so a 1,000-instruction program takes 0.3–1 s on 4,096 characters, and
 * `(?:a|aa|aaa){1000}x` (7,003 instructions) 6 s. Ordinary rules compile to 10–100 instructions
 * (`^order\s+#?(\d{4,8})$` is 27). These caps are checked when a rule is created or changed; what they let
 * through is bounded at match time by the per-message budget (see match-runner.ts).
 */
export const MAX_PROGRAM_SIZE_PER_RULE = 1_000;
/** The regex rules of one token subject together, disabled ones included (enabling one then crosses nothing). */
export const MAX_PROGRAM_SIZE_PER_SUBJECT = 5_000;

/** Case- and accent-insensitive form: decomposed, combining marks removed, case folded (ß → ss). */
export function foldText(text: string): string {
  return text.normalize("NFD").replace(/\p{M}/gu, "").toUpperCase().toLowerCase();
}

/** Compiles a rule's regex; throws with RE2's reason when it is refused. */
export function compileRegex(pattern: string, ignoreCase: boolean): RE2JS {
  return RE2JS.compile(pattern, ignoreCase ? RE2JS.CASE_INSENSITIVE : 0);
}

/** RE2's reason for refusing a pattern, or undefined when it compiles. */
export function regexProblem(pattern: string, ignoreCase: boolean): string | undefined {
  try {
    compileRegex(pattern, ignoreCase);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message.slice(0, 200) : "invalid regular expression";
  }
}

/** The compiled program's size in instructions (what matching costs per input character). */
export function programSize(pattern: string, ignoreCase: boolean): number {
  return compileRegex(pattern, ignoreCase).programSize();
}
