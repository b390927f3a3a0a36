"""The bookstore the tests and the docs use."""

from django.db import models
from django.db.models import Case, Count, F, Max, Min, Q, Sum, Value, When
from django.db.models.functions import Concat, Lower

import dbrules


class Publisher(models.Model):
    name = models.CharField(max_length=200)
    country = models.CharField(max_length=2, default="")
    num_authors = models.IntegerField(default=0)
    total_books = models.BigIntegerField(default=0)

    class Meta:
        rules = [
            dbrules.Derived("num_authors", Count("authors")),
            # A chain: a sum of another rule's derived column.
            dbrules.Derived("total_books", Sum("authors__num_books")),
        ]

    def __str__(self) -> str:
        return self.name


class Author(models.Model):
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=200, default="")
    publisher = models.ForeignKey(
        Publisher, related_name="authors", null=True, blank=True, on_delete=models.SET_NULL
    )
    num_books = models.IntegerField(default=0)
    num_published = models.IntegerField(default=0)
    total_pages = models.BigIntegerField(default=0)
    last_published = models.DateField(null=True, blank=True)
    shortest_book = models.IntegerField(null=True, blank=True)
    priced_total = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    standing = models.CharField(max_length=20, default="")

    class Meta:
        rules = [
            dbrules.Derived("num_books", Count("books")),
            dbrules.Derived("num_published", Count("books", filter=Q(books__published=True))),
            dbrules.Derived("total_pages", Sum("books__pages")),
            dbrules.Derived("last_published", Max("books__published_on")),
            dbrules.Derived("shortest_book", Min("books__pages", filter=Q(books__published=True))),
            dbrules.Derived("priced_total", Sum("books__price")),
            # Normalising a column from itself.
            dbrules.Derived("email", Lower("email")),
            # A same-row rule over an aggregate, copied onto every book: it
            # changes when only num_books is written.
            dbrules.Derived(
                "standing",
                Case(When(num_books__gte=2, then=Value("established")), default=Value("new")),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Book(models.Model):
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    pages = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    published = models.BooleanField(default=False)
    published_on = models.DateField(null=True, blank=True)
    author_name = models.CharField(max_length=200, default="")
    publisher_country = models.CharField(max_length=2, null=True, blank=True)
    author_standing = models.CharField(max_length=20, default="")
    title_key = models.CharField(max_length=200, default="")
    label = models.TextField(default="")
    size = models.CharField(max_length=5, default="")
    weight_grams = models.IntegerField(default=0)
    num_tags = models.IntegerField(default=0)
    tags = models.ManyToManyField("Tag", related_name="books", blank=True)

    class Meta:
        rules = [
            dbrules.Derived("author_name", F("author__name")),
            dbrules.Derived("publisher_country", F("author__publisher__country")),
            dbrules.Derived("author_standing", F("author__standing")),
            dbrules.Derived("title_key", Lower("title")),
            dbrules.Derived("label", Concat("title", Value(" by "), "author_name")),
            dbrules.Derived(
                "size",
                Case(When(pages__gte=300, then=Value("long")), default=Value("short")),
            ),
            dbrules.Derived("weight_grams", F("pages") * 3 + 50),
            dbrules.Derived("num_tags", Count("tags")),
        ]

    def __str__(self) -> str:
        return self.title


class Tag(models.Model):
    name = models.CharField(max_length=50)
    num_books = models.IntegerField(default=0)

    class Meta:
        rules = [dbrules.Derived("num_books", Count("books"))]


class Reader(models.Model):
    """An explicit through model (Loan) between readers and books."""

    name = models.CharField(max_length=100)
    books = models.ManyToManyField(Book, through="Loan", related_name="readers")
    num_loans = models.IntegerField(default=0)
    num_open_loans = models.IntegerField(default=0)

    class Meta:
        rules = [
            dbrules.Derived("num_loans", Count("books")),
            dbrules.Derived("num_open_loans", Count("loans", filter=Q(loans__returned=False))),
        ]


class Loan(models.Model):
    reader = models.ForeignKey(Reader, related_name="loans", on_delete=models.CASCADE)
    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    returned = models.BooleanField(default=False)
    # Copies only: its row trigger names every operator itself and runs
    # without a pinned search_path (test_privileges checks it cannot be
    # redirected).
    book_title = models.CharField(max_length=200, default="")

    class Meta:
        rules = [dbrules.Derived("book_title", F("book__title"))]


class Shelf(models.Model):
    """Counted only (no sum that can be empty, no min or max): a statement
    that moves one item off a shelf and another onto it changes nothing
    here, so no count locks the shelf."""

    name = models.CharField(max_length=100)
    num_items = models.IntegerField(default=0)

    class Meta:
        rules = [dbrules.Derived("num_items", Count("items"))]


class ShelfItem(models.Model):
    shelf = models.ForeignKey(Shelf, related_name="items", on_delete=models.CASCADE)
    shelf_name = models.CharField(max_length=100, default="")

    class Meta:
        rules = [dbrules.Derived("shelf_name", F("shelf__name"))]


class Sticker(models.Model):
    """A copy two hops away alone: Django can send it when the item and the
    item's shelf are both in memory."""

    item = models.ForeignKey(ShelfItem, related_name="stickers", on_delete=models.CASCADE)
    shelf_name = models.CharField(max_length=100, default="")

    class Meta:
        rules = [dbrules.Derived("shelf_name", F("item__shelf__name"))]


class Depot(models.Model):
    """Sources of copies of several column types, none of them counted: the
    copy check compares by min and max where the type has them (text,
    integer, boolean) and groups by the value where it has not (uuid)."""

    name = models.CharField(max_length=100, null=True)
    code = models.UUIDField(null=True)
    priority = models.IntegerField(default=0)
    is_open = models.BooleanField(default=True)


class Parcel(models.Model):
    depot = models.ForeignKey(Depot, related_name="parcels", null=True, on_delete=models.SET_NULL)
    depot_name = models.CharField(max_length=100, null=True)
    depot_code = models.UUIDField(null=True)
    depot_priority = models.IntegerField(null=True)
    depot_open = models.BooleanField(null=True)

    class Meta:
        rules = [
            dbrules.Derived("depot_name", F("depot__name")),
            dbrules.Derived("depot_code", F("depot__code")),
            dbrules.Derived("depot_priority", F("depot__priority")),
            dbrules.Derived("depot_open", F("depot__is_open")),
        ]


class Account(models.Model):
    """Two relations of one table lead here, a transfer's source and target:
    a statement on transfers locks the accounts of both in one key order."""

    name = models.CharField(max_length=100)
    num_sent = models.IntegerField(default=0)
    total_sent = models.BigIntegerField(default=0)
    total_received = models.BigIntegerField(default=0)

    class Meta:
        rules = [
            dbrules.Derived("num_sent", Count("outgoing")),
            dbrules.Derived("total_sent", Sum("outgoing__amount")),
            dbrules.Derived("total_received", Sum("incoming__amount")),
        ]


class Transfer(models.Model):
    source = models.ForeignKey(Account, related_name="outgoing", on_delete=models.CASCADE)
    target = models.ForeignKey(Account, related_name="incoming", on_delete=models.CASCADE)
    amount = models.IntegerField(default=1)
    source_name = models.CharField(max_length=100, default="")

    class Meta:
        rules = [dbrules.Derived("source_name", F("source__name"))]
