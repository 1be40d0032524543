/**
 * Where the CLI gets its targets. `model` is @ccmem/scenario's `createModelTarget`; `kvm`
 * (real /dev/kvm through @ccmem/kvm) is loaded with `loadKvmTarget()` only when a command asks
 * for it, so the other commands never load koffi. CCMEM_TARGET_MODULE names a module exporting
 * `createTarget(name)` that replaces both (used to test the CLI itself).
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { InvariantMode, Target, TargetName } from '@ccmem/scenario';
import type { KernelProfile } from '@ccmem/core';

type ScenarioModule = typeof import('@ccmem/scenario');
/** @ccmem/scenario, imported by loadTargets() (so that --help and --version never load it) */
let scenario: ScenarioModule | undefined;

/** what a command may tell a factory: the host profile the kvm target detected, for the model */
export interface TargetFactoryOptions {
  hostProfile?: KernelProfile;
  /** when the model's invariant checker runs (`--invariants`; other targets ignore it) */
  invariants?: InvariantMode;
}

export type TargetFactory = (opts?: TargetFactoryOptions) => Target;

/** how to get each target's factory (the kvm one imports its module on first use) */
const loaders = new Map<TargetName, () => Promise<TargetFactory>>();
const unavailable = new Map<TargetName, string>();
/** the targets came from CCMEM_TARGET_MODULE (no real device behind `kvm`) */
let overridden = false;

export function registerTarget(name: TargetName, factory: TargetFactory): void {
  loaders.set(name, async () => factory);
  unavailable.delete(name);
}

/**
 * Whether the matrix gets a `kvm` column: a kvm target exists and, for the real one, /dev/kvm
 * is there (without it every kvm row would only say so).
 */
export function kvmColumnAvailable(): boolean {
  return loaders.has('kvm') && (overridden || scenario?.kvmUnavailableReason() === null);
}

/**
 * Why a command cannot use the named target on this machine (the real kvm target without a
 * usable /dev/kvm), or null: such a command exits 2, like for any target that cannot run.
 */
export function targetProblem(name: TargetName): string | null {
  if (name !== 'kvm' || overridden) return null;
  return scenario ? scenario.kvmUnavailableReason() : null;
}

/** A target's factory; rejects with a clear error when this build has none of that name. */
export async function getTargetFactory(name: TargetName): Promise<TargetFactory> {
  const load = loaders.get(name);
  if (!load) {
    const why = unavailable.get(name);
    throw new Error(`${name} target not available${why ? `: ${why}` : ''}`);
  }
  return load();
}

/** A fresh target. */
export async function getTarget(name: TargetName, opts?: TargetFactoryOptions): Promise<Target> {
  return (await getTargetFactory(name))(opts);
}

/** Resolve where the targets come from, once, before a command runs. */
export async function loadTargets(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const override = env.CCMEM_TARGET_MODULE;
  if (override) {
    const mod = (await import(pathToFileURL(resolve(override)).href)) as { createTarget?: unknown };
    const create = mod.createTarget;
    if (typeof create !== 'function') throw new Error(`CCMEM_TARGET_MODULE ${override} does not export createTarget(name)`);
    overridden = true;
    for (const name of ['model', 'kvm'] as const) {
      const probe = (create as (name: TargetName) => Target | undefined)(name);
      if (probe) registerTarget(name, () => create(name) as Target);
      else unavailable.set(name, `not provided by ${override}`);
    }
    return;
  }
  const s = (scenario ??= await import('@ccmem/scenario'));
  if (!loaders.has('model')) {
    registerTarget('model', (opts) =>
      s.createModelTarget({ ...(opts?.hostProfile && { hostProfile: opts.hostProfile }), ...(opts?.invariants && { invariants: opts.invariants }) }),
    );
  }
  if (!loaders.has('kvm')) loaders.set('kvm', async () => (await s.loadKvmTarget()).createKvmTarget);
}
