import { keyOf, type ProgramRun } from "./program.js";

// What the engine must receive as resource options, checked on the registrations the mocks recorded: a stack
// that keeps its data protects what holds data or identity (and retains the backup bucket when it leaves the
// stack); a disposable stack protects and retains nothing, so one `pulumi destroy` removes it. The expectations
// are written out here, not derived from plan/protection.ts, so a wrong decision there is caught too.

interface Guard {
  protect: boolean;
  retainOnDelete: boolean;
}

/** Resource types a kept stack must guard, with the options each must carry. */
export const GUARDED_WHEN_KEPT: ReadonlyArray<{ type: RegExp; guard: Guard; holds: string }> = [
  // The instance holds nothing that must outlive it (the data lives on its own volume): never guarded.
  {
    type: /^aws:ec2\/instance:Instance$/,
    guard: { protect: false, retainOnDelete: false },
    holds: "nothing",
  },
  { type: /^aws:ebs\/volume:Volume$/, guard: { protect: true, retainOnDelete: true }, holds: "data" },
  { type: /^aws:s3\/bucket:Bucket$/, guard: { protect: true, retainOnDelete: true }, holds: "backups" },
  // What keeps the bucket private, encrypted and versioned shares its fate (its lifecycle rule does not: losing
  // it expires nothing).
  {
    type: /^aws:s3\/bucket(PublicAccessBlock|OwnershipControls|ServerSideEncryptionConfiguration|Versioning|Policy):/,
    guard: { protect: true, retainOnDelete: true },
    holds: "backups",
  },
  { type: /^aws:ec2\/eip:Eip$/, guard: { protect: true, retainOnDelete: false }, holds: "identity" },
  { type: /^aws:ec2\/keyPair:KeyPair$/, guard: { protect: true, retainOnDelete: false }, holds: "identity" },
  {
    type: /^tls:index\/privateKey:PrivateKey$/,
    guard: { protect: true, retainOnDelete: false },
    holds: "identity",
  },
];

/** One line per resource whose registered options differ from what the stack must have; [] when all hold. */
export function protectionProblems(run: ProgramRun, kept: boolean): string[] {
  const problems: string[] = [];
  let guardedSeen = 0;
  for (const r of run.resources) {
    const rule = GUARDED_WHEN_KEPT.find((g) => g.type.test(r.type));
    if (kept && rule?.guard.protect) guardedSeen++;
    const want: Guard | undefined = kept ? rule?.guard : { protect: false, retainOnDelete: false };
    if (!want) continue;
    for (const option of ["protect", "retainOnDelete"] as const) {
      if (r.options[option] !== want[option])
        problems.push(`${keyOf(r)}: ${option} is ${r.options[option]}, must be ${want[option]}`);
    }
  }
  // A check that finds nothing to check passes vacuously: every guarded kind must be there.
  if (kept) {
    for (const rule of GUARDED_WHEN_KEPT) {
      if (!run.resources.some((r) => rule.type.test(r.type)))
        problems.push(`no resource of type ${rule.type.source} registered`);
    }
    if (guardedSeen === 0) problems.push("no guarded resource registered");
  }
  return problems;
}
