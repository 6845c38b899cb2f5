// Fastify's own list of what an app registered (printRoutes), read back as (METHOD, path) pairs: tests that must
// cover every route iterate this, not a list of their own, so a route added anywhere is covered without anyone
// listing it.

/** (METHOD, path) of every route in Fastify's printRoutes tree, HEAD twins included as Fastify lists them. */
export function routesOfTree(tree: string): Array<{ method: string; path: string }> {
  const routes: Array<{ method: string; path: string }> = [];
  const stack: string[] = [];
  for (const line of tree.split("\n")) {
    const match = /^((?:[│ ] {3})*)[├└]── (.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!match) continue;
    const depth = (match[1] ?? "").length / 4;
    stack.length = depth;
    const path = `${stack.join("")}${match[2]}`;
    stack.push(match[2] ?? "");
    for (const method of (match[3] ?? "").split(", ").filter(Boolean)) routes.push({ method, path });
  }
  return routes;
}
