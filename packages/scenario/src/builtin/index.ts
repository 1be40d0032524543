/**
 * The built-in conformance suite: the YAML files in the package's `scenarios/` directory
 * (grouped in sub-directories by area), parsed and validated.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadScenarioFile } from '../parse.js';
import type { Scenario } from '../schema.js';

/** Directory holding the built-in scenario files (`<package>/scenarios`, from src/ or dist/). */
export function builtinScenarioDir(): string {
  return fileURLToPath(new URL('../../scenarios/', import.meta.url));
}

/** Every built-in scenario file, sorted by path. */
export function builtinScenarioFiles(dir = builtinScenarioDir()): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.yaml') || name.endsWith('.yml')) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/**
 * Parse every built-in scenario. `file` is relative to the scenarios directory
 * (e.g. `memslots/overlap-eexist.yaml`). Throws ScenarioParseError on an invalid file.
 */
export function builtinScenarios(dir = builtinScenarioDir()): { file: string; scenario: Scenario }[] {
  return builtinScenarioFiles(dir).map((path) => ({ file: relative(dir, path), scenario: loadScenarioFile(path) }));
}
