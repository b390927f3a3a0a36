"""Multi-table inheritance, in a throwaway project: a child model's rules
copy columns its parent's table stores (through the parent link, as the ORM
joins them), parents count a child model's rows by its own ForeignKey, and
every write path that touches either table, or both, keeps them exact:
``create()`` and ``save()`` (two statements, parent row first), a
``QuerySet.update`` of an inherited column through the child's queryset, a
key or name changed on the parent's table, raw SQL writing the child's row
before its parent row, deletes of either. An abstract base's rules apply
to each concrete model, as Django hands every other Meta option down, and a
proxy reads its concrete model's."""

from __future__ import annotations

import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

DATABASE = "dbrules_inheritance"

MODELS = '''
from django.db import models
from django.db.models import Count, F, Sum
from django.db.models.functions import Lower
import dbrules

class Named(models.Model):
    name = models.CharField(max_length=50)
    name_key = models.CharField(max_length=50, default="")
    class Meta:
        abstract = True
        rules = [dbrules.Derived("name_key", Lower("name"))]

class Author(Named):
    num_items = models.IntegerField(default=0)
    num_ebooks = models.IntegerField(default=0)
    ebook_mb = models.BigIntegerField(default=0)
    class Meta(Named.Meta):
        rules = [
            *Named.Meta.rules,
            dbrules.Derived("num_items", Count("items")),
            dbrules.Derived("num_ebooks", Count("ebooks")),
            dbrules.Derived("ebook_mb", Sum("ebooks__size_mb")),
        ]

class Genre(Named):
    pass

class Pen(Author):  # a proxy reads its concrete model's rules
    class Meta:
        proxy = True

class Item(models.Model):
    author = models.ForeignKey(Author, related_name="items", on_delete=models.CASCADE)
    title = models.CharField(max_length=50)
    author_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [dbrules.Derived("author_name", F("author__name"))]

class Ebook(Item):
    owner = models.ForeignKey(Author, related_name="ebooks", on_delete=models.CASCADE)
    size_mb = models.IntegerField(default=0)
    author_copy = models.CharField(max_length=50, default="")
    title_copy = models.CharField(max_length=50, default="")
    owner_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [
            dbrules.Derived("author_copy", F("author__name")),  # item_ptr, then author
            dbrules.Derived("title_copy", F("title")),  # the parent row's column
            dbrules.Derived("owner_name", F("owner__name")),  # the child's own key
        ]

class Audiobook(Ebook):
    minutes = models.IntegerField(default=0)
    writer = models.CharField(max_length=50, default="")
    heading = models.CharField(max_length=50, default="")
    class Meta:
        rules = [
            dbrules.Derived("writer", F("author__name")),  # two parent links
            dbrules.Derived("heading", F("title")),
        ]

class Review(models.Model):
    ebook = models.ForeignKey(Ebook, related_name="reviews", on_delete=models.CASCADE)
    ebook_title = models.CharField(max_length=50, default="")
    class Meta:
        rules = [dbrules.Derived("ebook_title", F("ebook__title"))]  # into the child, then up
'''

SCRIPT = '''
import django; django.setup()
from django.db import connection, transaction
from django.db.models import F
import dbrules
from shop.models import Author, Genre, Item, Ebook, Audiobook, Pen, Review
Genre.objects.bulk_create([Genre(name="Poetry"), Genre(name="Drama")])
a, b = Author.objects.create(name="Ann"), Author.objects.create(name="BOB")
Item.objects.create(author=a, title="Plain")
first = Ebook.objects.create(author=a, owner=b, title="First", size_mb=30)
for i in range(4):
    Ebook(author=b, owner=a, title=f"E{i}", size_mb=i).save()
heard = Audiobook.objects.create(author=b, owner=b, title="Heard", size_mb=100, minutes=60)
Review.objects.bulk_create([Review(ebook=e) for e in Ebook.objects.all()])
Ebook.objects.filter(size_mb__lt=2).update(title="Cheap")  # UPDATE of the parent's table
Item.objects.filter(title="E2").update(author=a)  # the ebook's copies follow its item
Ebook.objects.filter(size_mb=3).update(owner=b)  # the child's own key
first.author = b
first.save()  # both tables, one statement each
with connection.cursor() as cur:
    cur.execute("UPDATE shop_author SET name = 'Bo' WHERE name = 'BOB'")
Audiobook.objects.filter(pk=heard.pk).update(title="Heard-again")
with transaction.atomic(), connection.cursor() as cur:  # the child's row before its parent row
    cur.execute("INSERT INTO shop_ebook (item_ptr_id, owner_id, size_mb, author_copy, title_copy, owner_name) "
                "VALUES (9000, %s, 7, 'x', 'x', 'x')", [a.pk])
    cur.execute("INSERT INTO shop_item (id, author_id, title, author_name) VALUES (9000, %s, 'Raw', 'x')", [b.pk])
Review.objects.create(ebook_id=9000)
Review.objects.filter(ebook_id=first.pk).update(ebook_id=first.pk)  # the UPDATE reads the title up the parent link
Ebook.objects.filter(size_mb=2).update(owner_id=F("owner_id"))  # the child's own key, by expression
Ebook.objects.filter(title="E3").delete()  # both rows
Item.objects.filter(title="Plain").delete()
a.refresh_from_db(); b.refresh_from_db()
raw = Ebook.objects.get(pk=9000)
heard = Audiobook.objects.get(pk=heard.pk)
print(a.num_items, a.num_ebooks, a.ebook_mb, b.num_items, b.num_ebooks, b.ebook_mb)
print(Ebook.objects.get(pk=first.pk).author_copy, raw.author_copy, raw.title_copy, raw.owner_name)
print(heard.writer, heard.heading, heard.owner_name, Review.objects.get(ebook_id=9000).ebook_title)
print(",".join(sorted(Review.objects.values_list("ebook_title", flat=True))))
print(",".join(sorted(Genre.objects.values_list("name_key", flat=True))), Author.objects.get(pk=b.pk).name_key)
pen = dbrules.annotate_live(Pen.objects.filter(pk=b.pk)).values("num_ebooks", "num_ebooks_live").get()
print(pen["num_ebooks"], pen["num_ebooks_live"])
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_children_of_a_multi_table_parent_stay_exact(project):
    # Ann: one item (E2, moved to her) and the ebooks she owns, E0..E2 and
    # the raw one (0+1+2+7 MB). Bob, renamed Bo: First (moved to him), E0,
    # E1, Heard and the raw item; he owns First and Heard (30+100 MB). The
    # audiobook's writer is three hops away (ebook_ptr, item_ptr, author):
    # renaming Bob reaches it through every item he wrote.
    assert migrate_and_run(project, SCRIPT) == [
        *"1 4 10 5 2 130".split(),
        *"Bo Bo Raw Ann".split(),
        *"Bo Heard-again Bo Raw".split(),
        "Cheap,Cheap,E2,First,Heard-again,Raw",
        "drama,poetry",
        "bo",
        "2",
        "2",
    ]
    assert_project_exact(project, rules=12)
