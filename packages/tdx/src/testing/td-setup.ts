/** Test support for the TDX module's tests (not published): TDs brought to a given state. */
import { PhysMem } from '@ccmem/core';
import { TDX_SUCCESS, tdxStatusName } from '../status.js';
import { TDX_TD_ATTR_SEPT_VE_DISABLE, TdxModule } from '../tdx-module.js';

/** a SEAMCALL of the set-up that must succeed */
function ok(what: string, status: number): void {
  if (status !== TDX_SUCCESS) throw new Error(`${what}: ${tdxStatusName(status)}`);
}

/** a TD whose keys are configured (TDH.MNG.CREATE, TDH.MNG.KEY.CONFIG), not initialized */
export function keyedTd(nrHkids = 4) {
  const phys = new PhysMem();
  const module = new TdxModule({ phys, nrHkids });
  const td = module.createTd();
  ok('TDH.MNG.CREATE', td.mngCreate(module.allocHkid()));
  ok('TDH.MNG.KEY.CONFIG', td.mngKeyConfig());
  return { phys, module, td, fresh: () => phys.allocPage() };
}

/** keyedTd(), then TDH.MNG.INIT (GPAW 48, SEPT_VE_DISABLE) and TDH.VP.INIT of vCPUs 0 and 1 */
export function initializedTd() {
  const t = keyedTd();
  ok('TDH.MNG.INIT', t.td.mngInit({ gpaw: 48, attributes: TDX_TD_ATTR_SEPT_VE_DISABLE }));
  ok('TDH.VP.INIT 0', t.td.vpInit(0));
  ok('TDH.VP.INIT 1', t.td.vpInit(1));
  return t;
}
