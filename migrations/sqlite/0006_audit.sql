-- Audit you can prove (#9): the public keys that sign audit checkpoints, kept for as long as the
-- trail is, so a checkpoint signed by a key that has since been rotated still verifies.
-- `public_key` is base64 of the raw key: 32 bytes for Ed25519, the 65-byte uncompressed SEC1 point
-- (0x04 ‖ X ‖ Y) for ES256.
CREATE TABLE audit_public_keys (
    key_id     TEXT PRIMARY KEY,
    algorithm  TEXT NOT NULL CHECK (algorithm IN ('Ed25519', 'ES256')),
    public_key TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- INV-2: insert-only like the events and checkpoints they vouch for.
CREATE TRIGGER audit_public_keys_no_update BEFORE UPDATE ON audit_public_keys
BEGIN
    SELECT RAISE(ABORT, 'INV-2: audit_public_keys is insert-only (UPDATE refused)');
END;
CREATE TRIGGER audit_public_keys_no_delete BEFORE DELETE ON audit_public_keys
BEGIN
    SELECT RAISE(ABORT, 'INV-2: audit_public_keys is insert-only (DELETE refused)');
END;
