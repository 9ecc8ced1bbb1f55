-- #15.1: a share still not removed after several tries is reported to admins once: when.
ALTER TABLE issuance_events ADD COLUMN revoke_alerted_at TIMESTAMPTZ;

-- #15.7: the local (development) vault's one-time shares, in the database so that every instance
-- on it sees the same state. No URL and no secret: the link's key is never stored (the share id is
-- derived from it one way), and the record's demo secret stays in dev-vault.json.
CREATE TABLE local_vault_shares (
    share_id   TEXT PRIMARY KEY,
    record_uid TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    opened_at  TIMESTAMPTZ,
    removed_at TIMESTAMPTZ
);
CREATE INDEX local_vault_shares_record_idx ON local_vault_shares (record_uid);
