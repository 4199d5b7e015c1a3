"""A tiny Django site whose sessions live in sessiond: log in, count
visits, log out. Users are in SQLite; sessions are not."""
