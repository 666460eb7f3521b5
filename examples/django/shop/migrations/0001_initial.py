from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("category", models.CharField(max_length=50, db_index=True)),
                ("name", models.CharField(max_length=100)),
                ("price", models.IntegerField()),
            ],
            options={"db_table": "items"},
        ),
    ]
