"""The usual signal pattern: copy the author's name before each save and
recount the old and the new author after each save or delete."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.db.models.signals import post_delete, post_init, post_save, pre_save
from django.dispatch import receiver

from bench.shop.models import SignalAuthor, SignalBook


def recount(author_id: int) -> None:
    books = SignalBook.objects.filter(author_id=OuterRef("pk")).order_by().values("author_id")
    SignalAuthor.objects.filter(pk=author_id).update(
        num_books=Coalesce(Subquery(books.annotate(n=Count("pk")).values("n")), Value(0)),
        num_published=Coalesce(
            Subquery(books.annotate(n=Count("pk", filter=Q(published=True))).values("n")), Value(0)
        ),
        total_pages=Coalesce(
            Subquery(books.annotate(n=Sum("pages")).values("n"), output_field=IntegerField()), Value(0)
        ),
    )


@receiver(post_init, sender=SignalBook)
def remember_author(sender: Any, instance: SignalBook, **kwargs: Any) -> None:
    instance._loaded_author_id = instance.author_id


@receiver(pre_save, sender=SignalBook)
def copy_author_name(sender: Any, instance: SignalBook, **kwargs: Any) -> None:
    if instance._state.adding or instance.author_id != instance._loaded_author_id:
        instance.author_name = SignalAuthor.objects.values_list("name", flat=True).get(pk=instance.author_id)


@receiver(post_save, sender=SignalBook)
def recount_after_save(sender: Any, instance: SignalBook, **kwargs: Any) -> None:
    recount(instance.author_id)
    if instance._loaded_author_id not in (None, instance.author_id):
        recount(instance._loaded_author_id)
    instance._loaded_author_id = instance.author_id


@receiver(post_delete, sender=SignalBook)
def recount_after_delete(sender: Any, instance: SignalBook, **kwargs: Any) -> None:
    recount(instance.author_id)
