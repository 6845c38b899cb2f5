import type {
  PolicyResource,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationPolicy,
} from "@pulumi/policy";

// Hand-built arguments for calling a policy's validation directly (the pattern of pulumi-policy-aws' tests):
// no CLI, no engine, only the type and properties a rule reads.

const opts = {
  protect: false,
  ignoreChanges: [],
  aliases: [],
  customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
  additionalSecretOutputs: [],
};

function notApplicable(reason?: string): never {
  throw new Error(`not applicable: ${reason ?? ""}`);
}

export function resourceArgs(
  type: string,
  props: Record<string, unknown>,
  name = "r",
  options: { protect?: boolean } = {},
): ResourceValidationArgs {
  return {
    type,
    props,
    name,
    urn: `urn:pulumi:test::wagate::${type}::${name}`,
    opts: { ...opts, ...options },
    stackTags: new Map(),
    isType: () => false,
    asType: () => undefined,
    getConfig: <T extends object>() => ({}) as T,
    notApplicable,
  };
}

/** The violations a resource policy reports for one resource. */
export async function violations(
  policy: ResourceValidationPolicy,
  type: string,
  props: Record<string, unknown>,
  options: { protect?: boolean } = {},
): Promise<string[]> {
  const found: string[] = [];
  const validate = policy.validateResource;
  const validators = Array.isArray(validate) ? validate : validate ? [validate] : [];
  for (const v of validators)
    await v(resourceArgs(type, props, "r", options), (message) => found.push(message));
  return found;
}

export function policyResource(
  type: string,
  name: string,
  props: Record<string, unknown>,
  propertyDependencies: Record<string, PolicyResource[]> = {},
): PolicyResource {
  return {
    type,
    name,
    props,
    urn: `urn:pulumi:test::wagate::${type}::${name}`,
    opts,
    dependencies: [],
    propertyDependencies,
    isType: () => false,
    asType: () => undefined,
  };
}

export async function stackViolations(
  policy: StackValidationPolicy,
  resources: PolicyResource[],
): Promise<string[]> {
  const found: string[] = [];
  await policy.validateStack(
    { resources, stackTags: new Map(), getConfig: <T extends object>() => ({}) as T, notApplicable },
    (message) => found.push(message),
  );
  return found;
}
