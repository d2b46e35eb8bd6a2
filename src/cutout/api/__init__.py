"""The TAXII 2.1 HTTP adapter over the service layer."""

from cutout.api.app import create_app

__all__ = ["create_app"]
