import { describe, expect, it } from 'vitest';
import { colorEnabled } from './io.js';

describe('colorEnabled (FORCE_COLOR, NO_COLOR, terminal)', () => {
  it('a terminal gets colour, a pipe does not, TERM=dumb does not', () => {
    expect(colorEnabled(true, {})).toBe(true);
    expect(colorEnabled(false, {})).toBe(false);
    expect(colorEnabled(true, { TERM: 'dumb' })).toBe(false);
  });

  it('NO_COLOR (non-empty) turns it off; an empty NO_COLOR is as if unset', () => {
    expect(colorEnabled(true, { NO_COLOR: '1' })).toBe(false);
    expect(colorEnabled(true, { NO_COLOR: '' })).toBe(true);
  });

  it('FORCE_COLOR turns it on off a terminal and wins over NO_COLOR; FORCE_COLOR=0/false turns it off', () => {
    for (const v of ['', '1', '2', '3', 'true']) expect(colorEnabled(false, { FORCE_COLOR: v }), v).toBe(true);
    expect(colorEnabled(false, { FORCE_COLOR: '1', NO_COLOR: '1' })).toBe(true);
    expect(colorEnabled(true, { FORCE_COLOR: '0' })).toBe(false);
    expect(colorEnabled(true, { FORCE_COLOR: 'false' })).toBe(false);
  });
});
