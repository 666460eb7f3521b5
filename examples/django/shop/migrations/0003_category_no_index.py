"""A regression: drops the index on category that the hot query uses."""
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_item_note")]
    operations = [migrations.AlterField(model_name="item", name="category",
                                        field=models.CharField(max_length=50))]
