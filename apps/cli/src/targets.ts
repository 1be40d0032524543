/**
 * Where the CLI gets its targets. `model` comes from @ccmem/scenario's `createModelTarget`,
 * `kvm` from @ccmem/scenario's `createKvmTarget` (real /dev/kvm through @ccmem/kvm), when those exist. CCMEM_TARGET_MODULE names a
 * module exporting `createTarget(name)` that replaces both (used to test the CLI itself).
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as scenarioPackage from '@ccmem/scenario';
import type { Target, TargetName } from '@ccmem/scenario';

export type TargetFactory = () => Target;

const factories = new Map<TargetName, TargetFactory>();
const unavailable = new Map<TargetName, string>();
/** the targets came from CCMEM_TARGET_MODULE (no real device behind `kvm`) */
let overridden = false;

export function registerTarget(name: TargetName, factory: TargetFactory): void {
  factories.set(name, factory);
  unavailable.delete(name);
}

export function hasTarget(name: TargetName): boolean {
  return factories.has(name);
}

/**
 * Whether the matrix gets a `kvm` column: a kvm target exists and, for the real one, /dev/kvm
 * is there (without it every kvm row would only say so).
 */
export function kvmColumnAvailable(): boolean {
  return factories.has('kvm') && (overridden || existsSync('/dev/kvm'));
}

/** A fresh target; throws a clear error when this build has none of that name. */
export function getTarget(name: TargetName): Target {
  const factory = factories.get(name);
  if (!factory) {
    const why = unavailable.get(name);
    throw new Error(`${name} target not available${why ? `: ${why}` : ''}`);
  }
  return factory();
}

function exported<T>(mod: unknown, name: string): T | undefined {
  const v = (mod as Record<string, unknown>)[name];
  return typeof v === 'function' ? (v as T) : undefined;
}

/** Resolve the target factories once, before a command runs. */
export async function loadTargets(env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const override = env.CCMEM_TARGET_MODULE;
  if (override) {
    const mod: unknown = await import(pathToFileURL(resolve(override)).href);
    const create = exported<(name: TargetName) => Target | undefined>(mod, 'createTarget');
    if (!create) throw new Error(`CCMEM_TARGET_MODULE ${override} does not export createTarget(name)`);
    overridden = true;
    for (const name of ['model', 'kvm'] as const) {
      const probe = create(name);
      if (probe) registerTarget(name, () => create(name)!);
      else unavailable.set(name, `not provided by ${override}`);
    }
    return;
  }
  if (!factories.has('model')) {
    const createModel = exported<() => Target>(scenarioPackage, 'createModelTarget');
    if (createModel) registerTarget('model', () => createModel());
    else unavailable.set('model', '@ccmem/scenario has no createModelTarget in this build');
  }
  if (!factories.has('kvm')) {
    const createKvm = exported<() => Target>(scenarioPackage, 'createKvmTarget');
    if (createKvm) registerTarget('kvm', () => createKvm());
    else unavailable.set('kvm', '@ccmem/scenario has no createKvmTarget in this build');
  }
}
