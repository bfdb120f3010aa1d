#pragma once
// Versioned schema migrations for the PostgreSQL store: the SQLite store's migrations, version for
// version, in PostgreSQL's dialect. Applied in order at start-up under an advisory lock, so that
// instances starting together apply each once. A migration is never edited once released: add a
// new one (to both lists).
#include <array>

namespace paymux::store::pg {

struct Migration {
  int version;
  const char* sql;
};

inline constexpr std::array<Migration, 6> kMigrations{{
    {1, R"sql(
CREATE TABLE payments (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  merchant TEXT NOT NULL,
  reference TEXT NOT NULL,
  connector TEXT NOT NULL,
  provider TEXT NOT NULL,
  provider_payment_id TEXT NOT NULL DEFAULT '',
  amount BIGINT NOT NULL CHECK (amount > 0),
  currency TEXT NOT NULL,
  amount_refunded BIGINT NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
  status TEXT NOT NULL,
  payment_method TEXT NOT NULL,
  request TEXT NOT NULL,
  next_action TEXT NOT NULL DEFAULT '',
  failure TEXT NOT NULL DEFAULT '',
  risk TEXT NOT NULL DEFAULT '',
  attempts TEXT NOT NULL DEFAULT '[]',
  return_url TEXT NOT NULL DEFAULT '',
  metadata TEXT NOT NULL DEFAULT '{}',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL DEFAULT 0,
  version BIGINT NOT NULL DEFAULT 0,
  UNIQUE (merchant, reference)
);
CREATE INDEX payments_merchant_seq ON payments (merchant, seq);
CREATE INDEX payments_pending ON payments (updated_at)
  WHERE status IN ('created', 'requires_action', 'processing');

CREATE TABLE refunds (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  payment_id TEXT NOT NULL REFERENCES payments (id),
  merchant TEXT NOT NULL,
  amount BIGINT NOT NULL CHECK (amount > 0),
  currency TEXT NOT NULL,
  status TEXT NOT NULL,
  provider_refund_id TEXT NOT NULL DEFAULT '',
  failure TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT '',
  reference TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX refunds_payment ON refunds (payment_id);

CREATE TABLE events (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  merchant TEXT NOT NULL,
  type TEXT NOT NULL,
  object_id TEXT NOT NULL,
  payload TEXT NOT NULL,
  created_at BIGINT NOT NULL
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
  created_at BIGINT NOT NULL,
  PRIMARY KEY (merchant, key)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at);

CREATE TABLE notifications (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  connector TEXT NOT NULL,
  received_at BIGINT NOT NULL,
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
ALTER TABLE payments ADD COLUMN next_check_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN check_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX payments_due ON payments (connector, next_check_at)
  WHERE status IN ('created', 'requires_action', 'processing');
)sql"},
    {3, R"sql(
-- Merchant webhooks: an outbox row per event, written in the event's transaction, and every
-- delivery attempt.
CREATE TABLE webhook_endpoints (
  merchant TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  disabled_at BIGINT NOT NULL DEFAULT 0,
  disabled_reason TEXT NOT NULL DEFAULT '',
  updated_at BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id TEXT NOT NULL UNIQUE REFERENCES events (id),
  merchant TEXT NOT NULL,
  order_key TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0,
  generation BIGINT NOT NULL DEFAULT 0,
  next_attempt_at BIGINT NOT NULL,
  lease_until BIGINT NOT NULL DEFAULT 0,
  last_status INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (merchant, next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (order_key, seq) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_disabled ON webhook_deliveries (merchant) WHERE state = 'disabled';

CREATE TABLE webhook_attempts (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id TEXT NOT NULL,
  attempted_at BIGINT NOT NULL,
  http_status INTEGER NOT NULL DEFAULT 0,
  latency_ms BIGINT NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  outcome TEXT NOT NULL
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, seq);

)sql"},
    {4, R"sql(
-- Facts a gateway reports about a payment that are not ours to interpret: a JSON object.
ALTER TABLE payments ADD COLUMN provider_data TEXT NOT NULL DEFAULT '{}';
)sql"},
    {5, R"sql(
-- Credentials a gateway issues at run time, a JSON object per connector; updates conditional on version.
CREATE TABLE connector_credentials (
  connector TEXT PRIMARY KEY,
  data TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
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

}  // namespace paymux::store::pg
