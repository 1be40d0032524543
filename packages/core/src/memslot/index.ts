export * from './dirty-bitmap.js';
export * from './memslot.js';
export * from './memslots.js';
export * from './set-memory-region.js';
export * from './dirty-log.js';
