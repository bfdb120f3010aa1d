#pragma once
// Versioned schema migrations for the SQLite store, applied in order at start-up. A migration is
// never edited once released: add a new one.
#include <array>

namespace paymux::store::sqlite {

struct Migration {
  int version;
  const char* sql;
};

inline constexpr std::array<Migration, 2> kMigrations{{
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
}};

}  // namespace paymux::store::sqlite
