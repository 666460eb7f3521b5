from django.db import models


class Item(models.Model):
    category = models.CharField(max_length=50)  # db_index dropped by 0003: the regression
    name = models.CharField(max_length=100)
    price = models.IntegerField()
    note = models.TextField(null=True)

    class Meta:
        db_table = "items"
