-- The done mark of a turn is written in place (#20): `finish_activities` no longer changes
-- `processed_at` (indexed, for ageing rows out), so the update touches no indexed column, and new
-- pages are filled to 80 % so the new row version fits on its page. Postgres then writes it as a
-- heap-only tuple: no new entries in the text primary key and the age index. Before, every one of
-- a channel run's 6,424 done marks moved its row and added index entries (0 heap-only).
ALTER TABLE processed_activities SET (fillfactor = 80);
