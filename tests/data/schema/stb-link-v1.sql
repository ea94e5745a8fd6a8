-- The schema of Usher's stb-link store (schema 1), as scripts/dump-schemas.sh dumped it from a
-- store made by `usher`. Test data: do not edit by hand.
CREATE TABLE paired_handsets (
      ed25519_public BLOB PRIMARY KEY,
      paired INTEGER NOT NULL);
PRAGMA user_version = 0;
