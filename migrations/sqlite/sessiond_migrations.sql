-- sessiond's record of the migrations applied to this database; created
-- before any migration runs. `adopted` marks a migration whose table a
-- Django app had created already, taken over as it was.
-- `backward_compatible` records the migration file's
-- `-- backward-compatible:` line: whether the previous release's sessiond
-- can still serve the schema it leaves (see README, "Upgrading and
-- rolling back"). A table from before that column gains it from
-- sessiond_migrations_compatible.sql.
CREATE TABLE IF NOT EXISTS sessiond_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    adopted INTEGER NOT NULL,
    backward_compatible INTEGER NOT NULL DEFAULT 0
);
