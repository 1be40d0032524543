export * from './numbers.js';
export * from './schema.js';
export * from './parse.js';
export * from './target.js';
export * from './runner.js';
export * from './matrix.js';
export * from './builtin/index.js';
