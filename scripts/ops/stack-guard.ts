import { isDisposableStack } from "../../infra/plan/protection.js";

// Which stacks an operator command may destroy. The rule is the program's own (infra/plan/protection.ts):
// only stacks known to be disposable (dev, staging, pr-<n>) lose their resources; prod and any name the
// program does not know are guarded, there and here, until someone changes that rule on purpose.

/** `staging`, `org/staging` or `org/project/staging`, as the Pulumi CLI accepts them. */
const STACK_REF = /^([A-Za-z0-9][A-Za-z0-9._-]*\/){0,2}[A-Za-z0-9][A-Za-z0-9._-]*$/;

export type StackVerdict =
  | { allowed: true; stack: string }
  | { allowed: false; stack: string; reason: string };

/** The stack's own name, without the organization and project a fully qualified reference carries. */
export function stackName(ref: string): string {
  return ref.slice(ref.lastIndexOf("/") + 1);
}

export function destroyVerdict(ref: string): StackVerdict {
  if (!STACK_REF.test(ref)) return { allowed: false, stack: ref, reason: "not a valid stack name" };
  const name = stackName(ref);
  if (/^prod(uction)?$/i.test(name) || /(^|[-_.])prod(uction)?([-_.]|$)/i.test(name)) {
    return { allowed: false, stack: ref, reason: "it is a production stack" };
  }
  if (!isDisposableStack(name)) {
    return {
      allowed: false,
      stack: ref,
      reason: "its resources are protected (only dev, staging and pr-<number> stacks are disposable)",
    };
  }
  return { allowed: true, stack: ref };
}
