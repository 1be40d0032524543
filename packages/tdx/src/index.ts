export * from './status.js';
export * from './sept.js';
export * from './tdx-module.js';
export * from './tdx-backend.js';
