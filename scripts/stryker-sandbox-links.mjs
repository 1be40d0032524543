#!/usr/bin/env node
// Run inside a Stryker sandbox (.stryker-tmp/sandbox-*) before the command runner's test command.
// Stryker links every package's node_modules back to the original tree, so `@ccmem/x` would load
// the original, unmutated sources. This replaces each such link with a real folder that links
// every entry back to the original, except `@ccmem/*`, which point at the sandbox's own copies.
// Outside a sandbox it does nothing. Idempotent.
import { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, symlinkSync, unlinkSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

const root = process.cwd();
if (!/[\\/]\.stryker-tmp[\\/]sandbox-[^\\/]+$/.test(root)) process.exit(0);

const dirs = ['packages', 'apps'].flatMap((g) => (existsSync(g) ? readdirSync(g).map((n) => join(g, n)) : []));
const ccmem = new Map(dirs.map((d) => [basename(d), resolve(root, d)]));

for (const dir of dirs) {
  const nm = join(dir, 'node_modules');
  if (!existsSync(nm) || !lstatSync(nm).isSymbolicLink()) continue;
  const original = resolve(dir, readlinkSync(nm));
  unlinkSync(nm);
  mkdirSync(nm);
  for (const entry of readdirSync(original)) {
    if (entry === '@ccmem') {
      mkdirSync(join(nm, entry));
      for (const pkg of readdirSync(join(original, entry))) {
        const target = ccmem.get(pkg) ?? join(original, entry, pkg);
        symlinkSync(target, join(nm, entry, pkg));
      }
    } else symlinkSync(join(original, entry), join(nm, entry));
  }
}
