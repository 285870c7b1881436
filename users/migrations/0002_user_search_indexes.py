"""Index for the admin's display-name prefix search.

Email prefixes need no new index: emails are stored lower-case (see the
`user_email_lowercase` constraint), and Django already gives the unique `email` column a
`varchar_pattern_ops` index (`..._like`) on PostgreSQL, which serves `LIKE 'term%'` in any
collation. Display names keep their case, so their search needs an index on
`lower(display_name)`; `text_pattern_ops` makes it serve `LIKE 'term%'` whatever the
database's collation. A trigram index would also serve `%term%`, but it is several times
larger and slower to maintain, and staff look people up by the start of their name.

Django renders an `OpClass` expression on every backend (SQLite rejects it), so the
index is created only on PostgreSQL, and CONCURRENTLY so that adding it to a large live
table does not block writes (hence a non-atomic migration).
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

INDEX_NAME = "user_display_name_lower_like_idx"


def create_index(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX_NAME} "
        "ON users_user (lower(display_name) text_pattern_ops)"
    )


def drop_index(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX_NAME}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("users", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
