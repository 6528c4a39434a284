"""The HTTP service: ``create_app(settings)`` builds the FastAPI app that answers ``POST /predict``.

Routes stay thin and call :mod:`centroids` (see ``routes.py``); settings come from the environment
(``settings.py``); detection and encoding run in a pool of worker processes (``pool.py``).
"""

from anfe.app.main import create_app
from anfe.app.settings import Settings

__all__ = ["Settings", "create_app"]
