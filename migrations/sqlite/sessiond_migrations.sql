-- sessiond's record of the migrations applied to this database; created
-- before any migration runs. `adopted` marks a migration whose table a
-- Django app had created already, taken over as it was.
CREATE TABLE IF NOT EXISTS sessiond_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    adopted INTEGER NOT NULL
);
