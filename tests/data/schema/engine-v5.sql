-- The schema of Usher's engine store (schema 5), as scripts/dump-schemas.sh dumped it from a
-- store made by `usher`. Test data: do not edit by hand.
CREATE TABLE operator (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      ca_system_id INTEGER NOT NULL,
      x25519_private BLOB NOT NULL,
      x25519_public BLOB NOT NULL,
      created INTEGER NOT NULL);
CREATE TABLE services (
      service_id INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      pass_day_price INTEGER,
      pass_currency TEXT);
CREATE TABLE stbs (
      stb_id INTEGER PRIMARY KEY,
      x25519_public BLOB NOT NULL,
      ed25519_public BLOB NOT NULL,
      next_emm_sequence INTEGER NOT NULL DEFAULT 1,
      registered INTEGER NOT NULL,
      account TEXT,
      credit_limit INTEGER,
      credit_currency TEXT, cut_off INTEGER NOT NULL DEFAULT 0);
CREATE TABLE grants (
      stb_id INTEGER NOT NULL REFERENCES stbs(stb_id),
      service_id INTEGER NOT NULL REFERENCES services(service_id),
      not_before INTEGER NOT NULL,
      not_after INTEGER NOT NULL,
      revoked INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (stb_id, service_id));
CREATE TABLE signing (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      ed25519_private BLOB NOT NULL,
      ed25519_public BLOB NOT NULL);
CREATE TABLE events (
      event_id INTEGER PRIMARY KEY,
      service_id INTEGER NOT NULL REFERENCES services(service_id),
      start INTEGER NOT NULL,
      duration INTEGER NOT NULL,
      title TEXT NOT NULL,
      min_age INTEGER NOT NULL,
      price_minor INTEGER NOT NULL CHECK (price_minor >= 0),
      currency TEXT NOT NULL,
      event_key BLOB NOT NULL);
CREATE TABLE cards (
      card_id INTEGER PRIMARY KEY AUTOINCREMENT,
      account TEXT NOT NULL,
      handset_public BLOB NOT NULL UNIQUE,
      currency TEXT NOT NULL,
      issued INTEGER NOT NULL,
      balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0));
CREATE TABLE journal (
      tx_id INTEGER PRIMARY KEY AUTOINCREMENT,
      kind TEXT NOT NULL,
      reference TEXT NOT NULL,
      created INTEGER NOT NULL);
CREATE TABLE postings (
      tx_id INTEGER NOT NULL REFERENCES journal(tx_id),
      account TEXT NOT NULL,
      amount INTEGER NOT NULL,
      currency TEXT NOT NULL);
CREATE INDEX postings_by_account ON postings(account);
CREATE TABLE spend_nonces (
      card_id INTEGER NOT NULL,
      nonce BLOB NOT NULL,
      PRIMARY KEY (card_id, nonce));
CREATE TABLE tickets (
      ticket_id INTEGER PRIMARY KEY AUTOINCREMENT,
      event_id INTEGER NOT NULL,
      stb_id INTEGER NOT NULL,
      card_id INTEGER NOT NULL,
      status TEXT NOT NULL,
      ticket BLOB,
      delivered INTEGER NOT NULL DEFAULT 0);
CREATE TABLE settings (
      name TEXT PRIMARY KEY,
      value INTEGER NOT NULL);
CREATE TABLE packages (
      package_id INTEGER PRIMARY KEY,
      name TEXT NOT NULL);
CREATE TABLE package_services (
      package_id INTEGER NOT NULL REFERENCES packages(package_id),
      service_id INTEGER NOT NULL REFERENCES services(service_id),
      PRIMARY KEY (package_id, service_id));
CREATE TABLE used_codes (
      code TEXT PRIMARY KEY,
      ticket_id INTEGER NOT NULL);
CREATE TABLE headends (
      headend_id INTEGER PRIMARY KEY,
      x25519_public BLOB NOT NULL,
      registered INTEGER NOT NULL);
CREATE TABLE signed_requests (
      replay_key BLOB PRIMARY KEY,
      card_id INTEGER NOT NULL,
      time INTEGER NOT NULL,
      reply BLOB NOT NULL);
CREATE INDEX signed_requests_time ON signed_requests (time);
CREATE TABLE requests (
      request_id BLOB PRIMARY KEY,
      reply BLOB NOT NULL,
      created INTEGER NOT NULL);
CREATE TABLE emm_queue (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      stb_id INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      carousel_until INTEGER NOT NULL,
      carousel_from INTEGER NOT NULL DEFAULT 0,
      created INTEGER NOT NULL DEFAULT 0,
      section BLOB NOT NULL, change_number INTEGER NOT NULL DEFAULT 0, priority INTEGER NOT NULL DEFAULT 1, address_type INTEGER NOT NULL DEFAULT 0, topic TEXT NOT NULL DEFAULT '',
      UNIQUE (stb_id, sequence));
CREATE TABLE impulse_purchases (
      stb_id INTEGER NOT NULL,
      event_id INTEGER NOT NULL,
      sequence INTEGER NOT NULL,
      PRIMARY KEY (stb_id, event_id));
CREATE UNIQUE INDEX one_valid_ticket_per_event ON tickets(stb_id, event_id) WHERE status = 'valid' AND event_id != 0;
CREATE TABLE billings (
      billing_id INTEGER PRIMARY KEY,
      ed25519_public BLOB NOT NULL,
      certified INTEGER NOT NULL);
CREATE INDEX emm_queue_by_change ON emm_queue (change_number);
CREATE INDEX emm_queue_by_until ON emm_queue (carousel_until);
CREATE TABLE emm_removed (
      change_number INTEGER PRIMARY KEY,
      id INTEGER NOT NULL,
      removed INTEGER NOT NULL);
CREATE INDEX emm_removed_by_time ON emm_removed (removed);
CREATE TABLE emm_counter (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        next_sequence INTEGER NOT NULL);
CREATE TABLE emm_groups (
        group_id INTEGER PRIMARY KEY,
        key_version INTEGER NOT NULL,
        group_key BLOB NOT NULL,
        members INTEGER NOT NULL DEFAULT 0);
CREATE TABLE group_members (
        stb_id INTEGER PRIMARY KEY REFERENCES stbs(stb_id),
        group_id INTEGER NOT NULL REFERENCES emm_groups(group_id),
        position INTEGER NOT NULL CHECK (position >= 0 AND position <= 255),
        UNIQUE (group_id, position));
CREATE TABLE global_keys (
        key_version INTEGER PRIMARY KEY,
        global_key BLOB NOT NULL,
        created INTEGER NOT NULL);
CREATE INDEX emm_queue_by_topic ON emm_queue (address_type, stb_id, topic);
CREATE INDEX emm_groups_with_room ON emm_groups (group_id) WHERE members < 256;
CREATE TABLE service_key_versions (
      service_id INTEGER NOT NULL REFERENCES services(service_id),
      key_version INTEGER NOT NULL,
      service_key BLOB NOT NULL,
      starts INTEGER NOT NULL,
      settled INTEGER NOT NULL DEFAULT 1,
      PRIMARY KEY (service_id, key_version));
PRAGMA user_version = 5;
