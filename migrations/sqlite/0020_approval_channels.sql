-- #18.7: a GROUP approver authority may name a Teams team channel where its approval cards are
-- posted. Authority rows are immutable (INV-1), so the channel lives here, append-only the same
-- way: a new choice revokes the one in force (revoked_at/revoked_by set once) and inserts a row;
-- nothing else is ever updated or deleted.
CREATE TABLE approval_channels (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    authority_id    BIGINT NOT NULL REFERENCES governed_resource_authorities (id),
    conversation_id TEXT NOT NULL,
    team_id         TEXT,
    set_by          TEXT NOT NULL,
    set_at          TEXT NOT NULL,
    revoked_at      TEXT,
    revoked_by      TEXT
);
-- At most one channel in force per authority.
CREATE UNIQUE INDEX approval_channels_in_force ON approval_channels (authority_id) WHERE revoked_at IS NULL;

CREATE TRIGGER approval_channels_no_delete BEFORE DELETE ON approval_channels
BEGIN
    SELECT RAISE(ABORT, 'INV-1: approval_channels is append-only; revoke instead of delete');
END;
CREATE TRIGGER approval_channels_revoke_once BEFORE UPDATE ON approval_channels
WHEN NEW.id IS NOT OLD.id
  OR NEW.authority_id IS NOT OLD.authority_id
  OR NEW.conversation_id IS NOT OLD.conversation_id
  OR NEW.team_id IS NOT OLD.team_id
  OR NEW.set_by IS NOT OLD.set_by
  OR NEW.set_at IS NOT OLD.set_at
  OR OLD.revoked_at IS NOT NULL
  OR NEW.revoked_at IS NULL
  OR NEW.revoked_by IS NULL
BEGIN
    SELECT RAISE(ABORT, 'INV-1: approval_channels is append-only: only an unrevoked row may be revoked, once');
END;

-- A request's approval card that could not be posted in its channel (the Connector refused or
-- was unreachable): the requester's status card says so. Insert-only.
CREATE TABLE approval_channel_misses (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id          BIGINT NOT NULL REFERENCES requests (id),
    approval_channel_id BIGINT NOT NULL REFERENCES approval_channels (id),
    at                  TEXT NOT NULL
);
CREATE INDEX approval_channel_misses_request_idx ON approval_channel_misses (request_id);
CREATE TRIGGER approval_channel_misses_no_update BEFORE UPDATE ON approval_channel_misses
BEGIN
    SELECT RAISE(ABORT, 'INV-2: approval_channel_misses is insert-only (UPDATE refused)');
END;
CREATE TRIGGER approval_channel_misses_no_delete BEFORE DELETE ON approval_channel_misses
BEGIN
    SELECT RAISE(ABORT, 'INV-2: approval_channel_misses is insert-only (DELETE refused)');
END;
