"""PostgreSQL: the pool, the embedded server, migrations, the directory tables, the journal."""
