"""The demo bookstore: the DESIGN's example, kept small."""

from django.db import models
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Lower

import dbrules


class Author(models.Model):
    name = models.CharField(max_length=200)
    num_books = models.IntegerField(default=0)
    num_published = models.IntegerField(default=0)
    total_pages = models.BigIntegerField(default=0)

    class Meta:
        rules = [
            dbrules.Derived("num_books", Count("books")),
            dbrules.Derived("num_published", Count("books", filter=Q(books__published=True))),
            dbrules.Derived("total_pages", Sum("books__pages")),
        ]


class Book(models.Model):
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    pages = models.IntegerField(default=0)
    published = models.BooleanField(default=False)
    author_name = models.CharField(max_length=200, default="")
    title_key = models.CharField(max_length=200, default="")

    class Meta:
        rules = [
            dbrules.Derived("author_name", F("author__name")),
            dbrules.Derived("title_key", Lower("title")),
        ]
