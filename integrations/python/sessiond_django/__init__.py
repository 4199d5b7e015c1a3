"""A Django session engine that keeps sessions in sessiond, over gRPC.

Set ``SESSION_ENGINE = "sessiond_django.session_store"``; the engine reads
``SESSIOND_ADDRESS`` (or ``SESSIOND_ADDRESSES``), ``SESSIOND_TIMEOUT``,
``SESSIOND_TOKEN`` and ``SESSIOND_TLS_*`` from the Django settings (see
``sessiond_django.client``). It is built on the framework-neutral
``sessiond_client``; install it with the ``[django]`` extra.
"""

__version__ = "0.2.0"
