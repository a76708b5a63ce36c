// What a request asks of SnapLogic, once its route has validated the path: the action, the org and the run.
import type { Action } from '../config/schema.js';

/**
 * Set by the route's validation step and read by every later step (authorization, limits, the
 * forward and the audit event). `ruuid` is absent for actions on an org as a whole.
 */
export interface RequestTarget {
  readonly action: Action;
  readonly org: string;
  readonly ruuid?: string;
}
