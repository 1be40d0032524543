import { DOMParser, type Element } from '@xmldom/xmldom';
import { expect } from 'vitest';

/** the root element of `text`, parsed with a real XML parser: any error the parser reports fails the test */
export function parseXml(text: string): Element {
  const errors: string[] = [];
  const doc = new DOMParser({ onError: (level, msg) => void (level !== 'warning' && errors.push(msg)) }).parseFromString(text, 'text/xml');
  expect(errors).toEqual([]);
  return doc.documentElement!;
}
