import { describe, expect, it } from 'vitest';
import { DEFAULT_INPUT_LIMITS, INVARIANT_MODES } from '@ccmem/scenario';
import { DEFAULT_MAX_FILE_MIB, DEFAULT_MAX_STEPS, DEFAULT_READ_TIMEOUT_S, INVARIANT_MODE_CHOICES } from './options.js';

describe('command-line constants written out for a fast --help', () => {
  it('agree with @ccmem/scenario', () => {
    expect([...INVARIANT_MODE_CHOICES]).toEqual([...INVARIANT_MODES]);
    expect(DEFAULT_MAX_STEPS).toBe(DEFAULT_INPUT_LIMITS.maxSteps);
    expect(DEFAULT_MAX_FILE_MIB * 2 ** 20).toBe(DEFAULT_INPUT_LIMITS.maxFileBytes);
    expect(DEFAULT_READ_TIMEOUT_S * 1000).toBe(DEFAULT_INPUT_LIMITS.readTimeoutMs);
  });
});
