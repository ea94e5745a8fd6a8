-- The schema of Usher's headend store (schema 1), as scripts/dump-schemas.sh dumped it from a
-- store made by `usher`. Test data: do not edit by hand.
CREATE TABLE identity (id INTEGER PRIMARY KEY CHECK (id = 1), headend_id INTEGER NOT NULL, ca_system_id INTEGER NOT NULL, operator_x25519 BLOB NOT NULL, x25519_private BLOB NOT NULL);
PRAGMA user_version = 0;
