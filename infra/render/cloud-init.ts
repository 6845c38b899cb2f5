// The instance's user data: how cloud-init makes the SSH host key at first boot, nothing else. It holds no
// secret and no key — the private host key is generated on the VM and never leaves it; only its public half is
// printed on the serial console, where the deploying machine reads it back (plan/host-key.ts). User data is
// readable by anything on the VM that reaches the metadata service and by anyone in the account allowed
// ec2:DescribeInstanceAttribute, so it must stay this way.

/**
 * One Ed25519 host key and no other (Debian's images otherwise make RSA and ECDSA keys too, and a client that
 * prefers ECDSA — Go's x/crypto/ssh, which Pulumi's command provider uses — would be shown a key other than the
 * pinned one). Keys an image might carry are deleted first, and the key is printed to the console.
 */
export function renderCloudConfig(): string {
  return [
    "#cloud-config",
    "# wagate: one fresh Ed25519 SSH host key, printed on the console for the deployer to pin.",
    "ssh_deletekeys: true",
    "ssh_genkeytypes: [ed25519]",
    "ssh:",
    "  emit_keys_to_console: true",
    "",
  ].join("\n");
}
