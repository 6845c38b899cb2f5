import { RE2JS } from "re2js";
import type { ReplyRule } from "../store/replies.js";

// Which rule answers an inbound text. Regexes run on re2js, a port of RE2: matching is linear in the input
// (no backtracking), so a pattern such as `(a+)+$` cannot hang the process, and RE2 refuses what it cannot run
// in linear time (backreferences, lookaround) at creation.

export const MAX_PATTERN_LENGTH = 512;
/**
 * Regexes see the first 4,096 characters of a message (a business text message's own limit). Linear time is
 * still time: a user may send 64 KiB, and every regex rule of every sub runs on it while Meta waits for 200.
 */
export const MAX_REGEX_INPUT = 4096;

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

export interface RuleMatcher {
  /** The first rule (they come best first) whose pattern matches `text`. */
  firstMatch(rules: readonly ReplyRule[], text: string): ReplyRule | undefined;
}

/** Keeps compiled regexes per rule version, so a burst of inbound messages compiles each once. */
export function createRuleMatcher(): RuleMatcher {
  const compiled = new Map<string, RE2JS | null>();
  const MAX_CACHED = 5_000;

  function regexFor(rule: ReplyRule): RE2JS | null {
    const key = `${rule.id}@${rule.updatedAt}`;
    let re = compiled.get(key);
    if (re === undefined) {
      try {
        re = compileRegex(rule.pattern, rule.ignoreCase);
      } catch {
        re = null;
      }
      if (compiled.size >= MAX_CACHED) compiled.clear();
      compiled.set(key, re);
    }
    return re;
  }

  function matches(rule: ReplyRule, text: string, folded: string): boolean {
    switch (rule.matchType) {
      case "exact":
        return rule.ignoreCase
          ? folded.trim() === foldText(rule.pattern).trim()
          : text.trim() === rule.pattern.trim();
      case "contains":
        return rule.ignoreCase ? folded.includes(foldText(rule.pattern)) : text.includes(rule.pattern);
      case "regex":
        return (
          regexFor(rule)
            ?.matcher(text.length > MAX_REGEX_INPUT ? text.slice(0, MAX_REGEX_INPUT) : text)
            .find() ?? false
        );
    }
  }

  return {
    firstMatch(rules, text) {
      const folded = foldText(text);
      return rules.find((rule) => matches(rule, text, folded));
    },
  };
}
