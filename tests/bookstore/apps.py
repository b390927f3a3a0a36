from django.apps import AppConfig


class BookstoreConfig(AppConfig):
    name = "tests.bookstore"
    label = "bookstore"
