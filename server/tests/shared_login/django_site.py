"""The Django site of the shared-login test (server/tests/shared_login.rs).

Users in SQLite through ``django.contrib.auth``, sessions in sessiond
through the ``sessiond_django`` engine. Every site of the test answers the
same three routes on the same ``sessionid`` cookie:

``GET /session``
    ``{"data": {...}}``, the whole session; Django adds ``"user"``, the id
    of the user ``django.contrib.auth`` sees as logged in (or null), which
    also checks the session's ``_auth_user_hash``.
``POST /session/<name>``
    stores the request body (JSON) as the session member ``name``.
``POST /logout``
    ``flush()``: the session deleted, a new empty one, the cookie removed.

and Django alone ``POST /login`` (form fields ``username``, ``password``).

Environment: ``SESSIOND_ADDRESS``, ``DJANGO_DB`` (an SQLite file, made
here), ``DJANGO_SECRET_KEY``, ``SITE_USER`` and ``SITE_PASSWORD`` (the user
made here). Prints ``listening on <port>`` once it serves on 127.0.0.1.
"""

import json
import os
import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
    ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    DATABASES={
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJANGO_DB"]}
    },
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    SESSION_ENGINE="sessiond_django.session_store",
    SESSIOND_ADDRESS=os.environ["SESSIOND_ADDRESS"],
    # A quick hasher: the test logs in a handful of times.
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    USE_TZ=True,
)
django.setup()

from django.contrib.auth import authenticate, get_user_model, login, logout  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402


@require_GET
def show_session(request):
    user = request.user.pk if request.user.is_authenticated else None
    return JsonResponse({"user": user, "data": dict(request.session.items())})


@csrf_exempt
@require_POST
def set_member(request, name):
    request.session[name] = json.loads(request.body)
    return JsonResponse({"ok": True})


@csrf_exempt
@require_POST
def log_in(request):
    user = authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponse("wrong user name or password", status=403)
    login(request, user)
    return JsonResponse({"user": user.pk})


@csrf_exempt
@require_POST
def log_out(request):
    logout(request)
    return JsonResponse({"ok": True})


urlpatterns = [
    path("session", show_session),
    path("session/<str:name>", set_member),
    path("login", log_in),
    path("logout", log_out),
]


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def main():
    call_command("migrate", verbosity=0, interactive=False)
    User = get_user_model()
    if not User.objects.filter(username=os.environ["SITE_USER"]).exists():
        User.objects.create_user(os.environ["SITE_USER"], password=os.environ["SITE_PASSWORD"])
    server = make_server(
        "127.0.0.1", 0, get_wsgi_application(), ThreadingServer, QuietHandler
    )
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
