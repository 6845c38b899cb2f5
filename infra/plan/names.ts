// Names AWS makes global, derived from the stack so that every run of a stack names the same thing.

/**
 * The backups bucket: S3 names are global, so the account and region make it unique; a plain string (not an
 * output) so that the host bundle, which holds it, is rendered before any resource exists.
 */
export function backupBucketName(stack: string, accountId: string, region: string): string {
  const slug = stack
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");
  const name = `wagate-${slug}-backups-${accountId}-${region}`;
  if (!/^\d{12}$/.test(accountId)) throw new Error(`AWS account id ${accountId} is not 12 digits`);
  if (slug === "" || name.length > 63) {
    throw new Error(
      `stack name ${stack} cannot make an S3 bucket name (${name} is longer than 63 characters)`,
    );
  }
  return name;
}
