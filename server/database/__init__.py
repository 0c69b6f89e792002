"""The database layer: Peewee models, migrations and connections (SQLite by default,
PostgreSQL for scale-out)."""
