export * from './errno.js';
export * from './uapi.js';
export * from './trace.js';
export * from './backend.js';
