"""The subcommands of ``anfe`` that work on the model: build, predict, centroids, prepare.

Each module has ``register(subparsers)``, named in the ``anfe.commands`` entry-point group of
``pyproject.toml`` beside those of the service, the scraper and the benchmark.
"""
