// The pinned AMI is looked up (by id, restricted to Debian's own account) before the instance uses it, so a
// typo, another distribution or the wrong architecture stops the preview instead of booting something else.

/** Debian's official AWS account, the publisher of its cloud images. */
export const DEBIAN_AMI_OWNER = "136693071363";
/** The Debian release the host runs (13, "trixie"): the provisioning and its packages are written for it. */
export const DEBIAN_RELEASE = 13;
/** Debian's AMIs log in as `admin` (with passwordless sudo). */
export const DEBIAN_SSH_USER = "admin";

/** Graviton instance families carry a `g` after the generation digit (t4g, m7g, c7gn, r8gd). */
export function architectureOf(instanceType: string): "arm64" | "x86_64" {
  const family = instanceType.split(".")[0] ?? "";
  return /^[a-z]+\d+[a-z]*g[a-z]*(-flex)?$/.test(family) ? "arm64" : "x86_64";
}

export interface AmiFacts {
  imageId: string;
  name: string;
  ownerId: string;
  architecture: string;
}

/** Why the image cannot host this stack, or undefined when it can. */
export function amiProblem(ami: AmiFacts, instanceType: string): string | undefined {
  if (ami.ownerId !== DEBIAN_AMI_OWNER)
    return `${ami.imageId} is not published by Debian (${DEBIAN_AMI_OWNER})`;
  const release = /^debian-(\d+)-(amd64|arm64)-/.exec(ami.name)?.[1];
  if (release !== String(DEBIAN_RELEASE)) {
    const what = release === undefined ? "not a Debian release image" : `Debian ${release}`;
    return `${ami.imageId} is ${ami.name} (${what}); this stack runs Debian ${DEBIAN_RELEASE} (debian-${DEBIAN_RELEASE}-*)`;
  }
  const wanted = architectureOf(instanceType);
  if (ami.architecture !== wanted) {
    return `${ami.imageId} is ${ami.architecture} but ${instanceType} needs ${wanted}`;
  }
  return undefined;
}
