"""One bookstore per way of keeping its derived values, side by side.

Every author keeps a count, a filtered count and a sum of its books; every
book copies its author's name. The variants differ only in who maintains
them: nobody (the reference), dbrules, a hand-written row-level trigger
(migration 0002), Django signals (signals.py), django-computedfields, and
the single-row floor: statements that carry their own maintenance
(bench/workloads.py).
"""

from __future__ import annotations

from computedfields.models import ComputedFieldsModel, computed
from django.db import models
from django.db.models import Count, F, Q, Sum

import dbrules


class Author(models.Model):
    """The columns every variant's author has; who keeps the last three
    right is what the variants differ in."""

    name = models.CharField(max_length=100)
    num_books = models.IntegerField(default=0)
    num_published = models.IntegerField(default=0)
    total_pages = models.BigIntegerField(default=0)

    class Meta:
        abstract = True


class Book(models.Model):
    """Every variant's book columns but its author (each variant's own)."""

    title = models.CharField(max_length=100)
    pages = models.IntegerField(default=0)
    published = models.BooleanField(default=False)
    author_name = models.CharField(max_length=100, default="")

    class Meta:
        abstract = True


class PlainAuthor(Author):
    pass


class PlainBook(Book):
    author = models.ForeignKey(PlainAuthor, related_name="books", on_delete=models.CASCADE)


class RulesAuthor(Author):
    """Maintained by dbrules; the read benchmark alone adds an index on num_books."""

    class Meta:
        rules = [
            dbrules.Derived("num_books", Count("books")),
            dbrules.Derived("num_published", Count("books", filter=Q(books__published=True))),
            dbrules.Derived("total_pages", Sum("books__pages")),
        ]


class RulesBook(Book):
    author = models.ForeignKey(RulesAuthor, related_name="books", on_delete=models.CASCADE)

    class Meta:
        rules = [dbrules.Derived("author_name", F("author__name"))]


class RowAuthor(Author):
    pass


class RowBook(Book):
    """Maintained by the row-level triggers of migration 0002."""

    author = models.ForeignKey(RowAuthor, related_name="books", on_delete=models.CASCADE)


class FloorAuthor(Author):
    pass


class FloorBook(Book):
    """No trigger: each single-row benchmark statement updates the author and
    copies its name in the same statement (workloads.FLOOR_STATEMENTS), the
    least an exact maintenance of these rules can do per write."""

    author = models.ForeignKey(FloorAuthor, related_name="books", on_delete=models.CASCADE)


class SignalAuthor(Author):
    pass


class SignalBook(Book):
    """Maintained by the receivers in signals.py."""

    author = models.ForeignKey(SignalAuthor, related_name="books", on_delete=models.CASCADE)


class ComputedAuthor(ComputedFieldsModel):
    name = models.CharField(max_length=100)

    @computed(models.IntegerField(default=0), depends=[("books", ["id"])])
    def num_books(self) -> int:
        return self.books.count() if self.pk else 0

    @computed(models.IntegerField(default=0), depends=[("books", ["published"])])
    def num_published(self) -> int:
        return self.books.filter(published=True).count() if self.pk else 0

    @computed(models.BigIntegerField(default=0), depends=[("books", ["pages"])])
    def total_pages(self) -> int:
        return (self.books.aggregate(total=Sum("pages"))["total"] or 0) if self.pk else 0


class ComputedBook(ComputedFieldsModel):
    author = models.ForeignKey(ComputedAuthor, related_name="books", on_delete=models.CASCADE)
    title = models.CharField(max_length=100)
    pages = models.IntegerField(default=0)
    published = models.BooleanField(default=False)

    @computed(models.CharField(max_length=100, default=""), depends=[("author", ["name"])])
    def author_name(self) -> str:
        return self.author.name


VARIANTS: dict[str, tuple[type[models.Model], type[models.Model]]] = {
    "no rules": (PlainAuthor, PlainBook),
    "dbrules": (RulesAuthor, RulesBook),
    "row trigger": (RowAuthor, RowBook),
    "signals": (SignalAuthor, SignalBook),
    "computedfields": (ComputedAuthor, ComputedBook),
    "floor": (FloorAuthor, FloorBook),
}
