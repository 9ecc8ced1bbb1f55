-- #18.7: a GROUP approver authority may name a Teams team channel where its approval cards are
-- posted. Authority rows are immutable (INV-1), so the channel lives here, append-only the same
-- way: a new choice revokes the one in force (revoked_at/revoked_by set once) and inserts a row;
-- nothing else is ever updated or deleted.
CREATE TABLE approval_channels (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    authority_id    BIGINT NOT NULL REFERENCES governed_resource_authorities (id),
    conversation_id TEXT NOT NULL,
    team_id         TEXT,
    set_by          TEXT NOT NULL,
    set_at          TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ,
    revoked_by      TEXT
);
-- At most one channel in force per authority.
CREATE UNIQUE INDEX approval_channels_in_force ON approval_channels (authority_id) WHERE revoked_at IS NULL;

CREATE FUNCTION approval_channels_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'INV-1: approval_channels is append-only; revoke instead of delete (id %)', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id
       OR NEW.authority_id IS DISTINCT FROM OLD.authority_id
       OR NEW.conversation_id IS DISTINCT FROM OLD.conversation_id
       OR NEW.team_id IS DISTINCT FROM OLD.team_id
       OR NEW.set_by IS DISTINCT FROM OLD.set_by
       OR NEW.set_at IS DISTINCT FROM OLD.set_at
       OR OLD.revoked_at IS NOT NULL
       OR NEW.revoked_at IS NULL
       OR NEW.revoked_by IS NULL THEN
        RAISE EXCEPTION 'INV-1: approval_channels is append-only: only an unrevoked row may be revoked, once (id %)', OLD.id
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER approval_channels_append_only_update BEFORE UPDATE ON approval_channels
    FOR EACH ROW EXECUTE FUNCTION approval_channels_append_only();
CREATE TRIGGER approval_channels_append_only_delete BEFORE DELETE ON approval_channels
    FOR EACH ROW EXECUTE FUNCTION approval_channels_append_only();

-- A request's approval card that could not be posted in its channel (the Connector refused or
-- was unreachable): the requester's status card says so. Insert-only.
CREATE TABLE approval_channel_misses (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id          BIGINT NOT NULL REFERENCES requests (id),
    approval_channel_id BIGINT NOT NULL REFERENCES approval_channels (id),
    at                  TIMESTAMPTZ NOT NULL
);
CREATE INDEX approval_channel_misses_request_idx ON approval_channel_misses (request_id);
CREATE TRIGGER approval_channel_misses_insert_only BEFORE UPDATE OR DELETE ON approval_channel_misses
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
