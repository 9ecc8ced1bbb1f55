-- #17.3: a job on a cron schedule runs once per fire time across instances. Every instance wakes
-- at the fire time; the one whose insert of (job, fire time) lands runs the job, the others skip
-- it. The claiming instance forgets its job's rows older than two days.
CREATE TABLE job_fires (
    job_name TEXT NOT NULL,
    fire_at  TEXT NOT NULL,
    holder   TEXT NOT NULL,
    PRIMARY KEY (job_name, fire_at)
);
