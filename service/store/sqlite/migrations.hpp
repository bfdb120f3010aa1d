#pragma once
// Versioned schema migrations for the SQLite store, applied in order at start-up. A migration is
// never edited once released: add a new one.
#include <array>

namespace paymux::store::sqlite {

struct Migration {
  int version;
  const char* sql;
};

inline constexpr std::array<Migration, 6> kMigrations{{
    {1, R"sql(
CREATE TABLE payments (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  merchant TEXT NOT NULL,
  reference TEXT NOT NULL,
  connector TEXT NOT NULL,
  provider TEXT NOT NULL,
  provider_payment_id TEXT NOT NULL DEFAULT '',
  amount INTEGER NOT NULL CHECK (amount > 0),
  currency TEXT NOT NULL,
  amount_refunded INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
  status TEXT NOT NULL,
  payment_method TEXT NOT NULL,
  request TEXT NOT NULL,
  next_action TEXT NOT NULL DEFAULT '',
  failure TEXT NOT NULL DEFAULT '',
  risk TEXT NOT NULL DEFAULT '',
  attempts TEXT NOT NULL DEFAULT '[]',
  return_url TEXT NOT NULL DEFAULT '',
  metadata TEXT NOT NULL DEFAULT '{}',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL DEFAULT 0,
  version INTEGER NOT NULL DEFAULT 0,
  UNIQUE (merchant, reference)
);
CREATE INDEX payments_merchant_status ON payments (merchant, status);
CREATE INDEX payments_pending ON payments (status, updated_at)
  WHERE status IN ('created', 'requires_action', 'processing');

CREATE TABLE refunds (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  payment_id TEXT NOT NULL REFERENCES payments (id),
  merchant TEXT NOT NULL,
  amount INTEGER NOT NULL CHECK (amount > 0),
  currency TEXT NOT NULL,
  status TEXT NOT NULL,
  provider_refund_id TEXT NOT NULL DEFAULT '',
  failure TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT '',
  reference TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id);

CREATE TABLE events (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  merchant TEXT NOT NULL,
  type TEXT NOT NULL,
  object_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX events_merchant ON events (merchant, seq);
CREATE INDEX events_object ON events (object_id, seq);

CREATE TABLE idempotency_keys (
  merchant TEXT NOT NULL,
  key TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  state TEXT NOT NULL,
  response_status INTEGER NOT NULL DEFAULT 0,
  response_body TEXT NOT NULL DEFAULT '',
  resource_id TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  PRIMARY KEY (merchant, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency_keys (created_at);

CREATE TABLE notifications (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  connector TEXT NOT NULL,
  received_at INTEGER NOT NULL,
  method TEXT NOT NULL,
  raw TEXT NOT NULL,
  verification TEXT NOT NULL,
  payment_id TEXT NOT NULL DEFAULT '',
  outcome TEXT NOT NULL DEFAULT '',
  dedup_key TEXT NOT NULL DEFAULT ''
);
CREATE INDEX notifications_payment ON notifications (payment_id);
)sql"},
    {2, R"sql(
-- Reconciliation: when a payment that has not reached a definite end is next asked about.
ALTER TABLE payments ADD COLUMN next_check_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN check_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX payments_due ON payments (next_check_at)
  WHERE status IN ('created', 'requires_action', 'processing');
)sql"},
    {3, R"sql(
-- Merchant webhooks: an outbox row per event, written in the event's transaction, and every
-- delivery attempt. Events stored before this migration are not delivered.
CREATE TABLE webhook_endpoints (
  merchant TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  disabled_at INTEGER NOT NULL DEFAULT 0,    -- 0: enabled; else when a 410 Gone disabled it
  disabled_reason TEXT NOT NULL DEFAULT '',
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE webhook_deliveries (
  seq INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE REFERENCES events (id),
  merchant TEXT NOT NULL,
  order_key TEXT NOT NULL,                  -- the payment: its events are sent one after the other
  state TEXT NOT NULL,                      -- pending | delivered | failed | disabled | skipped
  attempts INTEGER NOT NULL DEFAULT 0,      -- every attempt ever made
  failures INTEGER NOT NULL DEFAULT 0,      -- failed attempts since last queued: the retry schedule position
  generation INTEGER NOT NULL DEFAULT 0,    -- bumped by a redelivery, so a late result cannot undo it
  next_attempt_at INTEGER NOT NULL,
  lease_until INTEGER NOT NULL DEFAULT 0,   -- claimed by a sender until then
  last_status INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (merchant, next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (order_key, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_disabled ON webhook_deliveries (merchant) WHERE state = 'disabled';

CREATE TABLE webhook_attempts (
  seq INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL,
  attempted_at INTEGER NOT NULL,
  http_status INTEGER NOT NULL DEFAULT 0,   -- 0: no HTTP answer
  latency_ms INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  outcome TEXT NOT NULL                     -- delivered | retry | failed | disabled
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, seq);
)sql"},
    {4, R"sql(
-- Facts a gateway reports about a payment that are not ours to interpret (CashyPay's fee, as its
-- own decimal text): a JSON object shown on the payment as provider_data.
ALTER TABLE payments ADD COLUMN provider_data TEXT NOT NULL DEFAULT '{}';
)sql"},
    {5, R"sql(
-- Credentials a gateway issues at run time (Shouqianba terminal keys: activation, daily check-in),
-- a JSON object per connector. version: updates are conditional on it.
CREATE TABLE connector_credentials (
  connector TEXT PRIMARY KEY,
  data TEXT NOT NULL,
  version INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
-- Refunds whose outcome is unknown are asked about again.
CREATE INDEX refunds_pending ON refunds (updated_at) WHERE status = 'pending';
)sql"},
    {6, R"sql(
-- Which process took an idempotency key, and when each process last showed it was alive: a key
-- left in progress by a process that stopped is settled by another one (or by its successor).
ALTER TABLE idempotency_keys ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE TABLE instances (
  id TEXT PRIMARY KEY,
  started_at BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL
);
)sql"},
}};

}  // namespace paymux::store::sqlite
