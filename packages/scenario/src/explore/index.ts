// ccmem explore: deterministic exploration of concurrent KVM operations (docs/explore.md)
export * from './types.js';
export { World, Actor, SetupError, type ActorStepRecord, type PunchRecord, type WorldOptions } from './world.js';
export * from './engine.js';
export * from './load.js';
