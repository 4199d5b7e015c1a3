-- Django's own `sessions.0001_initial` on PostgreSQL, byte for byte, so that
-- a Django app can share this table (run Django's `migrate --fake-initial`).
-- There is no older sessiond that serves without this table.
-- backward-compatible: no
CREATE TABLE "django_session" ("session_key" varchar(40) NOT NULL PRIMARY KEY, "session_data" text NOT NULL, "expire_date" timestamp with time zone NOT NULL);
CREATE INDEX "django_session_expire_date_a5c62663" ON "django_session" ("expire_date");
CREATE INDEX "django_session_session_key_c0390e0f_like" ON "django_session" ("session_key" varchar_pattern_ops);
