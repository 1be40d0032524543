/**
 * `ccmem fuzz [--target diff|model] [--steps N] [--seed S] [--time T] [--out DIR] [--json]`:
 * long random campaigns. `diff` runs random sequences on the model (host profile) and on the
 * real kernel and keeps every disagreement; `model` runs them on the model alone and keeps every
 * invariant violation or model failure. Each finding is shrunk and written to DIR as a scenario
 * file (`ccmem diff` / `ccmem run` it). Progress goes to stderr; the summary to stdout.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostFuzzFeatures, PROFILES, runFuzzCampaign, runInputFuzzCampaign, type FuzzFeatures, type FuzzMode, type FuzzSummary, type KvmTarget } from '@ccmem/scenario';
import { profileByName } from '@ccmem/core';
import type { CliIo } from '../io.js';
import { kvmColumnAvailable } from '../targets.js';
import { parseDuration } from './explore.js';
import { EXIT_FAIL, EXIT_INVALID, EXIT_OK, invalid, targetsOrReport, toJson } from './shared.js';

/** the duration in milliseconds (explore's parser), or null when the text is not one */
function durationOrNull(text: string): number | null {
  try {
    return parseDuration(text);
  } catch {
    return null;
  }
}

export interface FuzzCommandOptions {
  target: FuzzMode | 'input';
  steps: string;
  seed: string;
  time?: string;
  out: string;
  maxLength: string;
  profile?: string;
  json?: boolean;
}

function positiveInt(text: string): number | null {
  const n = Number(text.replace(/_/g, ''));
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

export async function fuzzCommand(io: CliIo, opts: FuzzCommandOptions): Promise<number> {
  const c = io.color;
  const steps = positiveInt(opts.steps);
  const seed = Number(opts.seed);
  const maxLength = positiveInt(opts.maxLength);
  const timeMs = opts.time === undefined ? undefined : durationOrNull(opts.time);
  if (steps === null) return invalid(io, `--steps must be a positive integer, got "${opts.steps}"`);
  if (!Number.isSafeInteger(seed)) return invalid(io, `--seed must be an integer, got "${opts.seed}"`);
  if (maxLength === null) return invalid(io, `--max-length must be a positive integer, got "${opts.maxLength}"`);
  if (timeMs === null) return invalid(io, `--time must be a duration such as 90s, 5m or 1h, got "${opts.time}"`);

  if (opts.profile !== undefined && opts.target === 'diff') return invalid(io, '--profile is for --target model (the diff target follows this host)');
  if (opts.profile !== undefined && !(PROFILES as readonly string[]).includes(opts.profile)) return invalid(io, `--profile must be one of ${PROFILES.join(', ')}, got "${opts.profile}"`);
  // a model campaign generates what its profile's kernel has (no guest_memfd steps without it)
  const modelGmem = opts.profile === undefined || opts.profile === 'host' || profileByName(opts.profile)?.guestMemfd !== false;
  let features: FuzzFeatures = { guestMemfd: modelGmem, gmemFlags: [0, 1, 3], crossPage: true, dirtyRing: true, ...(opts.profile !== undefined && { profile: opts.profile as FuzzFeatures['profile'] }) };
  // a model campaign checks the invariants after every step
  const [model] = (await targetsOrReport(io, 'model', { invariants: 'full' })) ?? [];
  if (!model) return EXIT_INVALID;
  if (opts.target === 'input') return inputCampaign(io, opts, { model, features, inputs: steps, seed, ...(timeMs !== undefined && { timeMs }) });
  let kvm: KvmTarget | undefined;
  if (opts.target === 'diff') {
    if (!kvmColumnAvailable()) return invalid(io, '--target diff needs the real-KVM target: /dev/kvm is missing on this host (try --target model)');
    const [k] = (await targetsOrReport(io, 'kvm')) ?? [];
    if (!k) return EXIT_INVALID;
    kvm = k as KvmTarget;
    // generate only what this host can run: guest_memfd and its flags as the kernel reports them
    features = hostFuzzFeatures(kvm.capabilities ?? {});
  }

  const written: string[] = [];
  const tty = !opts.json && Boolean(process.stderr.isTTY);
  let lastLine = 0;
  const summary: FuzzSummary = runFuzzCampaign({
    mode: opts.target,
    model,
    ...(kvm && { kvm }),
    features,
    steps,
    seed,
    ...(timeMs !== undefined && { timeMs }),
    maxLength,
    onProgress: (p) => {
      const now = Date.now();
      if (!tty && now - lastLine < 5000 && p.steps < steps) return;
      lastLine = now;
      const rate = p.elapsedMs ? Math.round((p.steps * 1000) / p.elapsedMs) : 0;
      const line = `fuzz ${opts.target}: ${p.steps}/${steps} steps, ${p.sequences} sequences, ${p.findings} findings, ${rate} steps/s, ${(p.elapsedMs / 1000).toFixed(1)} s`;
      if (tty) process.stderr.write(`\r${line}`);
      else io.err(line);
    },
    onFinding: (f) => {
      mkdirSync(opts.out, { recursive: true });
      const file = join(opts.out, `fuzz-${opts.target}-${seed}-${written.length + 1}.yaml`);
      writeFileSync(file, f.yaml);
      written.push(file);
      if (!opts.json) io.err(`${tty ? '\n' : ''}${c.red('finding')} ${f.symptom} → ${file}`);
    },
  });
  if (tty) process.stderr.write('\n');
  if (opts.json) {
    io.out(
      toJson({
        target: summary.mode,
        seed: summary.seed,
        steps: summary.steps,
        sequences: summary.sequences,
        elapsed_ms: summary.elapsedMs,
        complete: summary.complete,
        findings: summary.found.map((f, i) => ({ symptom: f.symptom, details: f.details, file: written[i] })),
      }),
    );
  } else {
    io.out(
      `${summary.steps} steps in ${summary.sequences} sequences (seed ${seed}, ${(summary.elapsedMs / 1000).toFixed(1)} s${summary.complete ? '' : ', stopped by --time'}): ` +
        (summary.findings ? c.red(`${summary.findings} findings`) + ` written to ${opts.out}` : c.green('no findings')),
    );
  }
  return summary.findings ? EXIT_FAIL : EXIT_OK;
}

/**
 * `--target input`: random scenario text read and run on the model (fuzz/input.ts); `--steps`
 * counts inputs. A finding is an exception escaping the reader or the runner, an unlocated
 * error, or memory over the bound; each is written to DIR with its input.
 */
function inputCampaign(
  io: CliIo,
  opts: FuzzCommandOptions,
  run: Omit<Parameters<typeof runInputFuzzCampaign>[0], 'onProgress' | 'onFinding'>,
): number {
  const c = io.color;
  const written: string[] = [];
  let lastLine = 0;
  const s = runInputFuzzCampaign({
    ...run,
    onProgress: (p) => {
      const now = Date.now();
      if (now - lastLine < 5000 && p.inputs < run.inputs) return;
      lastLine = now;
      io.err(`fuzz input: ${p.inputs}/${run.inputs} inputs (exit 0: ${p.codes[0]}, 1: ${p.codes[1]}, 2: ${p.codes[2]}), ${p.steps} steps run, ${p.findings} findings, peak RSS ${Math.round(p.peakRss / 2 ** 20)} MiB, ${(p.elapsedMs / 1000).toFixed(1)} s`);
    },
    onFinding: (f) => {
      mkdirSync(opts.out, { recursive: true });
      const file = join(opts.out, `fuzz-input-${run.seed}-${written.length + 1}.yaml`);
      writeFileSync(file, `# ${f.problem.replace(/\n/g, ' ')}\n${f.text}`);
      written.push(file);
      if (!opts.json) io.err(`${c.red('finding')} ${f.problem} → ${file}`);
    },
  });
  if (opts.json) {
    io.out(
      toJson({
        target: 'input',
        seed: s.seed,
        inputs: s.inputs,
        ran: s.ran,
        exit_codes: s.codes,
        steps: s.steps,
        peak_rss_bytes: s.peakRss,
        elapsed_ms: s.elapsedMs,
        complete: s.complete,
        findings: s.found.map((f, i) => ({ problem: f.problem, file: written[i] })),
      }),
    );
  } else {
    io.out(
      `${s.inputs} inputs (${s.ran} ran, ${s.steps} steps; exit 0: ${s.codes[0]}, 1: ${s.codes[1]}, 2: ${s.codes[2]}; seed ${s.seed}, ${(s.elapsedMs / 1000).toFixed(1)} s${s.complete ? '' : ', stopped by --time'}, peak RSS ${Math.round(s.peakRss / 2 ** 20)} MiB): ` +
        (s.found.length ? c.red(`${s.found.length} findings`) + ` written to ${opts.out}` : c.green('no findings')),
    );
  }
  return s.found.length ? EXIT_FAIL : EXIT_OK;
}

