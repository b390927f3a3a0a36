"""The bookstore the tests and the docs use."""

from django.db import models
from django.db.models import Count, Max, Min, Q, Sum

import dbrules


class Author(models.Model):
    name = models.CharField(max_length=200)
    num_books = models.IntegerField(default=0)
    num_published = models.IntegerField(default=0)
    total_pages = models.BigIntegerField(default=0)
    last_published = models.DateField(null=True, blank=True)
    shortest_book = models.IntegerField(null=True, blank=True)
    priced_total = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)

    class Meta:
        rules = [
            dbrules.Derived("num_books", Count("books")),
            dbrules.Derived("num_published", Count("books", filter=Q(books__published=True))),
            dbrules.Derived("total_pages", Sum("books__pages")),
            dbrules.Derived("last_published", Max("books__published_on")),
            dbrules.Derived("shortest_book", Min("books__pages", filter=Q(books__published=True))),
            dbrules.Derived("priced_total", Sum("books__price")),
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

    def __str__(self) -> str:
        return self.title
