// Which stacks a pull request's change can affect, from the paths it touches, so preview.yml previews only
// those: a stack's own Pulumi.<stack>.yaml affects that stack; the program, the gateway it deploys, the policy
// pack and the dependencies affect every stack; documentation and operator scripts affect none.

const EVERY_STACK = [
  /^infra\//,
  /^gateway\//,
  /^Pulumi\.yaml$/,
  /^package(-lock)?\.json$/,
  /^tsconfig\.json$/,
];

export function affectedStacks(changedPaths: readonly string[], stacks: readonly string[]): string[] {
  const affected = new Set<string>();
  for (const path of changedPaths) {
    if (EVERY_STACK.some((re) => re.test(path))) return [...stacks];
    const own = /^Pulumi\.([A-Za-z0-9._-]+)\.yaml$/.exec(path);
    if (own && stacks.includes(own[1] as string)) affected.add(own[1] as string);
  }
  return stacks.filter((s) => affected.has(s));
}

/** The stacks of the project: one per committed Pulumi.<stack>.yaml. */
export function stacksFromFiles(fileNames: readonly string[]): string[] {
  return fileNames
    .map((f) => /^Pulumi\.([A-Za-z0-9._-]+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}
