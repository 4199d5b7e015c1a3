-- Django's own `sessions.0001_initial` on SQLite, byte for byte, so that a
-- Django app can share this table (run Django's `migrate --fake-initial`).
-- There is no older sessiond that serves without this table.
-- backward-compatible: no
CREATE TABLE "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" datetime NOT NULL);
CREATE INDEX "django_session_expire_date_a5c62663" ON "django_session" ("expire_date");
