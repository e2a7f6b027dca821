import {
  createLimitDataStage,
  createResetPeerStage,
  createSlowCloseStage,
  createTimeoutStage,
} from './closing-stages';
import { createBandwidthStage, createLatencyStage, createSlicerStage } from './pacing-stages';
import { createPassThroughStage, type Outlet, type Stage, type StageContext } from './stage';
import type { Toxic } from './toxic';

/**
 * Starts `toxic` on one link. One draw against `toxicity` decides whether this link runs the
 * toxic or passes data through; it is drawn again whenever the stage restarts (toxic update).
 *
 * @example
 * const stage = createStage(toxic, outlet, context);
 */
export function createStage(toxic: Toxic, out: Outlet, context: StageContext): Stage {
  if (!(context.random() < toxic.toxicity)) return createPassThroughStage(out);
  const a = (key: string): number => toxic.attributes[key] ?? 0;
  switch (toxic.type) {
    case 'latency':
      return createLatencyStage({ latency: a('latency'), jitter: a('jitter') }, out, context);
    case 'bandwidth':
      return createBandwidthStage({ rate: a('rate') }, out, context);
    case 'slicer':
      return createSlicerStage(
        { average_size: a('average_size'), size_variation: a('size_variation'), delay: a('delay') },
        out,
        context,
      );
    case 'timeout':
      return createTimeoutStage({ timeout: a('timeout') }, out);
    case 'reset_peer':
      return createResetPeerStage({ timeout: a('timeout') }, context);
    case 'slow_close':
      return createSlowCloseStage({ delay: a('delay') }, out);
    case 'limit_data':
      return createLimitDataStage({ bytes: a('bytes') }, out, context);
    case 'noop':
      return createPassThroughStage(out);
  }
}
