import type { AnyStateMachine } from 'xstate';
import { campaignMachine } from './campaign.ts';
import { promotionMachine } from './promotion.ts';

/**
 * The registry: every machine promosync serves, by name. The name is the `machine`
 * field of events and the key under which ranks are stored; never rename one in place.
 */
export const machines: Readonly<Record<string, AnyStateMachine>> = Object.freeze({
  promotion: promotionMachine,
  campaign: campaignMachine,
});
