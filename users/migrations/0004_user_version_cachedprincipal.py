"""The row version the cache orders writes by, and the read-only cached principal.

Expand-only: the column has a database default, so a release that does not know it
still inserts rows (blue-green).
"""

from django.db import migrations, models

import users.models


class Migration(migrations.Migration):
    dependencies = [("users", "0003_visible_text")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="version",
            field=models.PositiveBigIntegerField(db_default=1, default=1, editable=False),
        ),
        migrations.CreateModel(
            name="CachedPrincipal",
            fields=[],
            options={"proxy": True, "indexes": [], "constraints": []},
            bases=("users.user",),
            managers=[("objects", users.models.UserManager())],
        ),
    ]
