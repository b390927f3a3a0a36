"""Tables for the single-row floor: no trigger, the statements maintain them."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('bench_shop', '0002_row_triggers'),
    ]

    operations = [
        migrations.CreateModel(
            name='FloorAuthor',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('num_books', models.IntegerField(default=0)),
                ('num_published', models.IntegerField(default=0)),
                ('total_pages', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name='FloorBook',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('title', models.CharField(max_length=100)),
                ('pages', models.IntegerField(default=0)),
                ('published', models.BooleanField(default=False)),
                ('author_name', models.CharField(default='', max_length=100)),
                ('author', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='books', to='bench_shop.floorauthor')),
            ],
        ),
    ]
