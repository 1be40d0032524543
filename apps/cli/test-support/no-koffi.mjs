// `node --import <this file>`: the `koffi` package cannot be resolved, as on a machine where
// its native module or glibc is missing. What still runs never loaded @ccmem/kvm's FFI.
import { register } from 'node:module';

const hooks = `export async function resolve(specifier, context, next) {
  if (specifier === 'koffi' || specifier.startsWith('koffi/')) {
    throw Object.assign(new Error('koffi is unresolvable here (test-support/no-koffi.mjs)'), { code: 'ERR_MODULE_NOT_FOUND' });
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
