/**
 * Installs packed tarballs into a temporary project, as a user of the published packages
 * would get them: `pnpm pack` of each package (workspace ranges become real ones), then
 * `npm install --offline` of only those tarballs into an empty ESM project. The packages are
 * built first (through turbo, so an up-to-date build is a cache hit) unless turbo is already
 * running this test after their `build` task.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REPO_ROOT = new URL('../', import.meta.url).pathname;
const TSC = join(REPO_ROOT, 'node_modules/typescript/bin/tsc');

export interface PackedProject {
  /** the temporary project's directory */
  readonly dir: string;
  /** package name → the file list of its tarball (paths inside `package/`) */
  readonly contents: ReadonlyMap<string, readonly string[]>;
  /** run `node <file>` in the project; throws with stderr when it fails */
  node(file: string): string;
  /** write a file into the project */
  write(file: string, text: string): void;
  /** `tsc --noEmit` over the project's tsconfig.json; the compiler's output and exit status */
  typecheck(): { status: number; output: string };
  /** the installed package.json of a package */
  installedManifest(name: string): Record<string, unknown>;
  /** remove the tarballs and the project */
  dispose(): void;
}

function dirOf(name: string): string {
  return join(REPO_ROOT, 'packages', name.replace(/^@ccmem\//, ''));
}

const LOCK = join(REPO_ROOT, 'node_modules/.cache/ccmem-packed-install.lock');

/**
 * Test files run in parallel workers: one builds and packs at a time, so two builds never
 * write the same dist/ at once (mkdir is atomic; a lock older than 10 minutes is stale).
 */
function withLock<T>(fn: () => T): T {
  mkdirSync(join(LOCK, '..'), { recursive: true });
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      mkdirSync(LOCK);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      try {
        if (Date.now() - statSync(LOCK).mtimeMs > 600_000) rmSync(LOCK, { recursive: true, force: true });
      } catch {
        // released meanwhile
      }
      Atomics.wait(sleeper, 0, 0, 200);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(LOCK, { recursive: true, force: true });
  }
}

/** Build the packages (and what they depend on) unless turbo already did, as the test's dependency. */
export function ensureBuilt(names: readonly string[]): void {
  if (process.env.TURBO_HASH) return; // run by `turbo run test`: the packages' `build` ran first
  execFileSync('pnpm', ['exec', 'turbo', 'run', 'build', '--output-logs=errors-only', ...names.map((n) => `--filter=${n}`)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
  for (const n of names) {
    if (!existsSync(join(dirOf(n), 'dist/index.js'))) throw new Error(`${n} has no dist/index.js after its build`);
  }
}

export function packAndInstall(names: readonly string[]): PackedProject {
  const root = mkdtempSync(join(tmpdir(), 'ccmem-packed-'));
  const tarballs = join(root, 'tarballs');
  const dir = join(root, 'project');
  mkdirSync(tarballs);
  mkdirSync(dir);
  const contents = new Map<string, string[]>();
  const files = withLock(() => {
    ensureBuilt(names);
    return names.map((name) => {
      const before = new Set(readdirSync(tarballs));
      execFileSync('pnpm', ['pack', '--pack-destination', tarballs], { cwd: dirOf(name), stdio: ['ignore', 'pipe', 'pipe'] });
      const tgz = readdirSync(tarballs).find((f) => !before.has(f));
      if (!tgz) throw new Error(`pnpm pack of ${name} wrote no tarball`);
      const file = join(tarballs, tgz);
      const listing = execFileSync('tar', ['tzf', file], { encoding: 'utf8' }).split('\n').filter(Boolean);
      contents.set(name, listing.map((p) => p.replace(/^package\//, '')));
      return file;
    });
  });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'ccmem-consumer', private: true, type: 'module' }, null, 2));
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--no-package-lock', ...files], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, npm_config_cache: join(root, 'npm-cache'), npm_config_update_notifier: 'false' },
  });
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022', lib: ['ES2023'], module: 'NodeNext', moduleResolution: 'NodeNext', strict: true,
        noEmit: true, skipLibCheck: false, types: ['node'], typeRoots: [join(REPO_ROOT, 'node_modules/@types')],
      },
      include: ['*.ts'],
    }, null, 2),
  );
  return {
    dir,
    contents,
    node(file) {
      const r = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`node ${file} exited ${r.status}:\n${r.stderr}`);
      return r.stdout;
    },
    write(file, text) {
      writeFileSync(join(dir, file), text);
    },
    typecheck() {
      const r = spawnSync(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' });
      return { status: r.status ?? 1, output: r.stdout + r.stderr };
    },
    installedManifest(name) {
      return JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')) as Record<string, unknown>;
    },
    dispose() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** The first ```js block of a package's README: the example a user copies. */
export function readmeExample(name: string): string {
  const text = readFileSync(join(dirOf(name), 'README.md'), 'utf8');
  const m = /```js\n([\s\S]*?)```/.exec(text);
  if (!m) throw new Error(`${name}/README.md has no js example`);
  return m[1]!;
}

/** A second copy of an installed package, as a second version in another node_modules would be. */
export function copyInstalled(project: PackedProject, name: string, to: string): void {
  cpSync(join(project.dir, 'node_modules', name), join(project.dir, to), { recursive: true });
}
