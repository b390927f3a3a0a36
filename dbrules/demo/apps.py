from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "dbrules.demo"
    label = "dbrules_demo"
    verbose_name = "dbrules demo bookstore"
