// `node --import <this file>`: every @ccmem package is unresolvable. `ccmem --help`,
// `ccmem --version` and `ccmem help <command>` must still work: they load commander and the
// command definitions, nothing else (that is what keeps them fast).
import { register } from 'node:module';

const hooks = `export async function resolve(specifier, context, next) {
  if (specifier.startsWith('@ccmem/')) {
    throw Object.assign(new Error(specifier + ' is unresolvable here (test-support/commander-only.mjs)'), { code: 'ERR_MODULE_NOT_FOUND' });
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
