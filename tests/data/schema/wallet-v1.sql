-- The schema of Usher's wallet store (schema 1), as scripts/dump-schemas.sh dumped it from a
-- store made by `usher`. Test data: do not edit by hand.
CREATE TABLE identity (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      account TEXT NOT NULL,
      currency TEXT NOT NULL,
      engine TEXT NOT NULL,
      card_id INTEGER NOT NULL,
      ed25519_private BLOB NOT NULL,
      ed25519_public BLOB NOT NULL,
      issuer_ed25519 BLOB NOT NULL,
      card_certificate BLOB NOT NULL);
CREATE TABLE tickets (
      ticket_id INTEGER PRIMARY KEY,
      ticket BLOB NOT NULL,
      emm_section BLOB NOT NULL,
      gift INTEGER NOT NULL,
      delivered INTEGER NOT NULL DEFAULT 0,
      deliver_at INTEGER NOT NULL DEFAULT 0);
CREATE TABLE stb_links (
      stb_id INTEGER PRIMARY KEY,
      link TEXT NOT NULL);
CREATE TABLE receipts (
      receipt_id INTEGER PRIMARY KEY,
      stb_id INTEGER NOT NULL,
      kind INTEGER NOT NULL,
      amount_minor INTEGER NOT NULL,
      currency TEXT NOT NULL,
      receipt BLOB NOT NULL,
      delivered INTEGER NOT NULL DEFAULT 0);
PRAGMA user_version = 0;
