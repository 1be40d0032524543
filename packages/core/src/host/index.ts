export * from './phys-mem.js';
export * from './address-space.js';
export * from './process.js';
