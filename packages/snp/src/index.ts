// @ccmem/snp: the AMD SEV-SNP backend for @ccmem/core.
export * from './rmp.js';
export * from './instructions.js';
export * from './directmap.js';
export * from './launch-digest.js';
export * from './snp-backend.js';
