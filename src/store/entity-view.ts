import { storedValues, type FieldValue, type StoredField } from '../domain/index.ts';
import { encodeChangeCursorOf } from './change-cursor.ts';

/** An entity as the API returns it. */
export interface EntityView {
  id: string;
  machine: string;
  status: string;
  lastEvent: string;
  version: number | null;
  merchantId: string | null;
  attributes: Record<string, FieldValue>;
  anomalies: number;
  createdAt: string;
  updatedAt: string;
  /** The row's position in the change feed: newer changes have greater positions (docs/design.md#changes). */
  changeSeq: string;
}

/** Who may see what: a merchant only its own entities. */
export interface ReadScope {
  merchantId: string | null;
}

/** An entity row as {@link ENTITY_COLUMNS} selects it. */
export interface EntityRow {
  machine: string;
  entityId: string;
  status: string;
  lastEvent: string;
  version: string | null;
  merchantId: string | null;
  fields: unknown;
  anomalies: number;
  createdAt: Date | string;
  updatedAt: Date | string;
  changeXid: string;
}

/** The columns of an entity view, from `entity e`. */
export const ENTITY_COLUMNS = `e.machine, e.entity_id AS "entityId", e.status, e.last_event AS "lastEvent",
  e.version::text AS version, e.merchant_id AS "merchantId", e.fields, e.anomalies,
  e.created_at AS "createdAt", e.updated_at AS "updatedAt", e.change_xid::text AS "changeXid"`;

/** The API's view of a row. */
export function toView(r: EntityRow): EntityView {
  return {
    id: r.entityId,
    machine: r.machine,
    status: r.status,
    lastEvent: r.lastEvent,
    version: r.version === null ? null : Number(r.version),
    merchantId: r.merchantId,
    attributes: storedValues((r.fields ?? {}) as Record<string, StoredField>),
    anomalies: r.anomalies,
    createdAt: new Date(r.createdAt).toISOString(),
    updatedAt: new Date(r.updatedAt).toISOString(),
    changeSeq: encodeChangeCursorOf(r.changeXid, r.entityId),
  };
}
