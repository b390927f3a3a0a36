from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "bench.shop"
    label = "bench_shop"

    def ready(self) -> None:
        from bench.shop import signals  # noqa: F401  (connects the receivers)
