// The entry Pulumi's policy runner loads. The runner `require()`s the pack with its own CommonJS ts-node, which
// cannot load this repository's ESM TypeScript (and ignores PulumiPolicy.yaml's runtime options); it awaits
// what the module exports, so this entry registers tsx and imports the pack as the rest of the project runs.
module.exports = async () => {
  const { register } = await import("tsx/esm/api");
  register();
  await import("./index.ts");
};
