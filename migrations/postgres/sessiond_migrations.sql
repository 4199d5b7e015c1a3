-- sessiond's record of the migrations applied to this schema; created
-- before any migration runs. `adopted` marks a migration whose table a
-- Django app had created already, taken over as it was.
CREATE TABLE IF NOT EXISTS sessiond_migrations (
    version bigint PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamp with time zone NOT NULL DEFAULT now(),
    adopted boolean NOT NULL
);
