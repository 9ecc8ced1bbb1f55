-- #18.6: the IANA time zone a person's Teams client last reported (clientInfo `timezone` or
-- `localTimezone`), so cards and messages show their local time. NULL: never reported (UTC).
ALTER TABLE users ADD COLUMN time_zone TEXT;
