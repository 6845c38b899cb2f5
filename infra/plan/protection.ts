// Which resources a stack guards against deletion: the decision lives here, as a pure function of the stack name,
// and the components only apply what it returns. The stack tests check what the engine then receives (the
// registration's `protect` and `retainOnDelete`, read on its way to Pulumi's mocks).

/** What a resource holds, as far as losing it is concerned. */
export type Holds =
  /** The database and its backups: the data volume and the backup bucket (the instance holds none: disposable). */
  | "data"
  /** What the outside world knows the service by: the Elastic IP, the SSH key (changing it replaces the VM). */
  | "identity";

export interface Protection {
  /** Pulumi refuses to delete the resource (also on `pulumi destroy`) until the flag is removed. */
  protect: boolean;
  /** Deleting the resource from the stack leaves it in AWS. */
  retainOnDelete: boolean;
  /** The bucket may be deleted while it still holds backups. */
  forceDestroyBucket: boolean;
}

/** Stacks that hold nothing worth keeping and must be removable with one `pulumi destroy`. */
export function isDisposableStack(stack: string): boolean {
  return stack === "dev" || stack === "staging" || /^pr-\d+$/.test(stack);
}

/**
 * prod (and any stack not known to be disposable: a new name is guarded until someone says otherwise)
 * protects what holds data or identity and keeps the backup bucket when it leaves the stack.
 */
export function protectionFor(stack: string, holds: Holds | "nothing"): Protection {
  const guarded = !isDisposableStack(stack) && holds !== "nothing";
  return {
    protect: guarded,
    retainOnDelete: guarded && holds === "data",
    forceDestroyBucket: !guarded,
  };
}
