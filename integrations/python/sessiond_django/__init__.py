"""A Django session engine that keeps sessions in sessiond, over gRPC.

Set ``SESSION_ENGINE = "sessiond_django.session_store"``; the engine reads
``SESSIOND_ADDRESS``, ``SESSIOND_TIMEOUT`` and ``SESSIOND_TOKEN`` from the
Django settings (see ``sessiond_django.client``).

This module imports nothing on purpose: ``python -m sessiond_django.generate``
must run before the gRPC stubs exist.
"""

__version__ = "0.1.0"
