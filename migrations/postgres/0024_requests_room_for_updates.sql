-- A request row is updated many times in its life: claimed and given back by the scheduler (twice
-- per run that touches it), moved through its statuses, its token set and cleared. An update can
-- stay on the row's own page without touching any index (a HOT update) only when that page has
-- room and no indexed column changed; claims and their release change no indexed column, but with
-- pages packed full (the default fill factor, 100) each one was written to another page and given
-- a new entry in all five of the table's indexes. New pages of `requests` are now filled to 80 %,
-- leaving room for those updates. Existing pages keep their layout until rewritten (VACUUM FULL or
-- CLUSTER); rows written from now on get the room.
ALTER TABLE requests SET (fillfactor = 80);
