-- The schema of Usher's stb store (schema 4), as scripts/dump-schemas.sh dumped it from a
-- store made by `usher`. Test data: do not edit by hand.
CREATE TABLE identity (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      stb_id INTEGER NOT NULL,
      ca_system_id INTEGER NOT NULL,
      operator_x25519 BLOB NOT NULL,
      operator_ed25519 BLOB NOT NULL,
      x25519_private BLOB NOT NULL,
      x25519_public BLOB NOT NULL,
      ed25519_private BLOB NOT NULL,
      ed25519_public BLOB NOT NULL,
      created INTEGER NOT NULL);
CREATE TABLE entitlements (
      service_id INTEGER PRIMARY KEY,
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      not_before INTEGER NOT NULL,
      not_after INTEGER NOT NULL,
      revoked INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE tickets (
      ticket_id INTEGER PRIMARY KEY,
      event_id INTEGER NOT NULL,
      ticket BLOB NOT NULL,
      event_key BLOB NOT NULL,
      status TEXT NOT NULL,
      received INTEGER NOT NULL,
      ack_relayed INTEGER NOT NULL DEFAULT 0,
      mac BLOB NOT NULL);
CREATE TABLE credit (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      limit_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE collection (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      within INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE offers (
      event_id INTEGER PRIMARY KEY,
      service_id INTEGER NOT NULL,
      start INTEGER NOT NULL,
      duration INTEGER NOT NULL,
      price_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      min_age INTEGER NOT NULL,
      event_key BLOB NOT NULL,
      title TEXT NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE history (
      sequence INTEGER PRIMARY KEY,
      event_id INTEGER NOT NULL UNIQUE,
      price_minor INTEGER NOT NULL,
      payment INTEGER NOT NULL,
      record BLOB NOT NULL,
      hash BLOB NOT NULL,
      settled INTEGER NOT NULL DEFAULT 0,
      receipt_id INTEGER,
      mac BLOB NOT NULL);
CREATE TABLE chain (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      last_sequence INTEGER NOT NULL,
      last_hash BLOB NOT NULL,
      last_settled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE receipts (
      receipt_id INTEGER PRIMARY KEY,
      kind INTEGER NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      applied INTEGER NOT NULL);
CREATE TABLE prepaid (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      balance_minor INTEGER NOT NULL CHECK (balance_minor >= 0),
      currency TEXT NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE room (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      counter INTEGER NOT NULL,
      stay_id INTEGER NOT NULL,
      limit_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      billing_endpoint TEXT NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE parental (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      max_age INTEGER NOT NULL,
      pin_salt BLOB NOT NULL,
      pin_hash BLOB NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE revoked_tickets (
      ticket_id INTEGER PRIMARY KEY);
CREATE TABLE emm_applied (
      sequence INTEGER PRIMARY KEY,
      applied INTEGER NOT NULL);
CREATE TABLE billing_certificate (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      certificate BLOB NOT NULL,
      received INTEGER NOT NULL);
CREATE TABLE service_keys (
      service_id INTEGER NOT NULL,
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL,
      PRIMARY KEY (service_id, key_version));
CREATE TABLE group_key (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      group_id INTEGER NOT NULL,
      position INTEGER NOT NULL,
      key_version INTEGER NOT NULL,
      group_key BLOB NOT NULL,
      sequence INTEGER NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE global_keys (
      key_version INTEGER PRIMARY KEY,
      global_key BLOB NOT NULL,
      mac BLOB NOT NULL);
CREATE TABLE operator_messages (
      message_id INTEGER PRIMARY KEY,
      text TEXT NOT NULL,
      sequence INTEGER NOT NULL,
      issued INTEGER NOT NULL);
PRAGMA user_version = 4;
