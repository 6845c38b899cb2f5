// The memory allocator nginx runs with: jemalloc (Debian's libjemalloc2), preloaded into the master, whose workers
// inherit it. Why: libmodsecurity allocates and frees some 6,000 small C++ objects for every request it judges
// (each rule copies its variables and each transformation its string), and glibc's malloc and free are about a
// quarter of the anonymous request's instructions through full CRS. Measured with `npm run profile:edge`
// (callgrind, nginx user-space instructions per request, Debian 13's packages): bench:edge's anonymous webhook POST
// 2,882k with glibc, 2,752k with glibc's tcache enlarged (GLIBC_TUNABLES=glibc.malloc.tcache_count=1000), 2,379k
// with jemalloc (−17 %), 2,267k with mimalloc (−21 %; Debian 13 ships 3.0.1, an early release of its new design,
// while jemalloc 5.3 has years of nginx deployments behind it); ModSecurity without rules 411k → 283k; nginx
// without the WAF and a verified API request (njs, no ModSecurity) unchanged. Verdicts do not depend on the
// allocator.
//
// The same preload everywhere nginx runs: the VM (a systemd drop-in for nginx.service, provision.sh's nginx step),
// and the local stack, tests, bench:edge and profile:edge (scripts/lib/nginx.ts).

/** The Debian package that provides the library (in HOST_PACKAGES and the Debian 13 root of the edge's checks). */
export const NGINX_ALLOCATOR_PACKAGE = "libjemalloc2";

/**
 * LD_PRELOAD's value. `$LIB` is ld.so's own token for the library directory of the running architecture
 * (`lib/x86_64-linux-gnu` or `lib/aarch64-linux-gnu` on Debian), so one value fits amd64 and arm64 instances;
 * systemd's Environment= passes `$` through unexpanded.
 */
export const NGINX_ALLOCATOR_PRELOAD = "/usr/$LIB/libjemalloc.so.2";

/** The environment nginx's master starts with. */
export const NGINX_ENVIRONMENT: Readonly<Record<string, string>> = { LD_PRELOAD: NGINX_ALLOCATOR_PRELOAD };

/** The drop-in for Debian's nginx.service. A reload keeps the master, and its allocator: a change needs a restart. */
export function renderNginxAllocatorDropIn(): string {
  const lines = Object.entries(NGINX_ENVIRONMENT).map(([k, v]) => `Environment="${k}=${v}"`);
  return `# Rendered by wagate (infra/render/nginx-allocator.ts): nginx's allocator (the file says why).
[Service]
${lines.join("\n")}
`;
}
