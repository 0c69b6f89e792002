"""The Peewee store: one database (SQLite by default, PostgreSQL for scale-out)."""
