-- #15.8: a retrieval reservation (`issuances_in_flight`) held by a process that died mid-share is
-- not held forever. This is when the oldest reservation still held was taken; a consume that
-- finds it older than the longest a live retrieval can take reclaims the held ones.
ALTER TABLE requests ADD COLUMN issuances_in_flight_since TEXT;
-- Reservations held before this column existed have no start: they are released (a retrieval
-- that was still running records only while retrievals are left, INV-4).
UPDATE requests SET issuances_in_flight = 0 WHERE issuances_in_flight > 0;
