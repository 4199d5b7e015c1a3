-- sessiond's record of the migrations applied to this schema; created
-- before any migration runs. `adopted` marks a migration whose table a
-- Django app had created already, taken over as it was.
-- `backward_compatible` records the migration file's
-- `-- backward-compatible:` line: whether the previous release's sessiond
-- can still serve the schema it leaves (see README, "Upgrading and
-- rolling back"). A table from before that column gains it from
-- sessiond_migrations_compatible.sql.
CREATE TABLE IF NOT EXISTS sessiond_migrations (
    version bigint PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamp with time zone NOT NULL DEFAULT now(),
    adopted boolean NOT NULL,
    backward_compatible boolean NOT NULL DEFAULT false
);
