-- The schema of Usher's billing store (schema 3), as scripts/dump-schemas.sh dumped it from a
-- store made by `usher`. Test data: do not edit by hand.
CREATE TABLE identity (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      billing_id INTEGER NOT NULL,
      ed25519_private BLOB NOT NULL,
      certificate BLOB NOT NULL, engine_endpoint TEXT NOT NULL DEFAULT 'tcp://127.0.0.1:7700', ca_system_id INTEGER NOT NULL DEFAULT 0, operator_x25519 BLOB, operator_ed25519 BLOB, x25519_private BLOB);
CREATE TABLE config (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL);
CREATE TABLE stbs (
      stb_id INTEGER PRIMARY KEY,
      settled_sequence INTEGER NOT NULL DEFAULT 0,
      settled_hash BLOB NOT NULL,
      prepaid_minor INTEGER NOT NULL DEFAULT 0 CHECK (prepaid_minor >= 0),
      prepaid_currency TEXT);
CREATE TABLE settlements (
      settlement_id INTEGER PRIMARY KEY AUTOINCREMENT,
      kind INTEGER NOT NULL,
      stb_id INTEGER NOT NULL,
      first_sequence INTEGER NOT NULL,
      last_sequence INTEGER NOT NULL,
      last_hash BLOB NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      card_id INTEGER NOT NULL,
      stay_id INTEGER NOT NULL DEFAULT 0,
      state TEXT NOT NULL CHECK (state IN ('quoted', 'charging', 'paid')),
      history BLOB,
      spend BLOB,
      receipt BLOB,
      created INTEGER NOT NULL,
      paid INTEGER);
CREATE INDEX settlements_by_stb ON settlements(stb_id, state);
CREATE TABLE records (
      stb_id INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      hash BLOB NOT NULL,
      time INTEGER NOT NULL,
      event_id INTEGER NOT NULL,
      title TEXT NOT NULL,
      payment INTEGER NOT NULL,
      stay_id INTEGER NOT NULL,
      price_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      settlement_id INTEGER NOT NULL REFERENCES settlements,
      PRIMARY KEY (stb_id, sequence));
CREATE TABLE rooms (
      room TEXT PRIMARY KEY,
      stb_id INTEGER NOT NULL UNIQUE,
      link_endpoint TEXT NOT NULL,
      state_counter INTEGER NOT NULL DEFAULT 0,
      pending_state BLOB);
CREATE TABLE stays (
      stay_id INTEGER PRIMARY KEY AUTOINCREMENT,
      room TEXT NOT NULL REFERENCES rooms,
      guest_id TEXT NOT NULL,
      guest_name TEXT NOT NULL,
      checkin INTEGER NOT NULL,
      checkout INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX one_guest_per_room ON stays(room) WHERE checkout = 0;
CREATE TABLE pms_postings (
      posting_id INTEGER PRIMARY KEY AUTOINCREMENT,
      stay_id INTEGER NOT NULL,
      room TEXT NOT NULL,
      guest_id TEXT NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      description TEXT NOT NULL,
      time INTEGER NOT NULL,
      stb_id INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      state TEXT NOT NULL DEFAULT 'pending',
      attempts INTEGER NOT NULL DEFAULT 0,
      answer TEXT NOT NULL DEFAULT '',
      UNIQUE (stb_id, sequence));
CREATE TABLE pms_link (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      pms TEXT NOT NULL,
      condition TEXT NOT NULL,
      since INTEGER NOT NULL,
      last_error TEXT NOT NULL,
      last_error_at INTEGER NOT NULL,
      failed_attempts INTEGER NOT NULL,
      recorded INTEGER NOT NULL);
PRAGMA user_version = 3;
