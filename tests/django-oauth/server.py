"""A second real OAuth 2.0 authorization server for the integration tests:
django-oauth-toolkit (pinned by requirements.txt next to this file) on an
ephemeral loopback port.

Its answers differ from node-oidc-provider's where it matters to a gateway:
RFC 7662 answers name the user in `username` and carry no `sub`; `aud` only
when the token was issued for RFC 8707 resources; no caching headers.

Started by tests/support/django_oauth.rs with the venv's python. Django is
configured in code below (no project on disk); the database is a SQLite
file in the directory named by DJANGO_OAUTH_DATA_DIR (the caller owns and
removes it). When ready it prints ONE JSON line on stdout: the endpoints,
the clients with their secrets, the users with their passwords. It exits
when its stdin closes, so it never outlives the test that started it.

Options (JSON in DJANGO_OAUTH_TEST_OPTIONS): {"accessTokenTtl": seconds}.
"""

import json
import os
import secrets
import sys
import threading

import django
from django.conf import settings

LOOPBACK = "127.0.0.1"


def exit_when_stdin_closes():
    """Never outlive the test: exit as soon as the parent closes our stdin
    (or dies), even half-way through start-up."""
    try:
        while sys.stdin.buffer.read(65536):
            pass
    except OSError:
        pass
    os._exit(0)


watcher = threading.Thread(target=exit_when_stdin_closes, name="stdin", daemon=True)
watcher.start()

options = json.loads(os.environ.get("DJANGO_OAUTH_TEST_OPTIONS") or "{}")
access_token_ttl = int(options.get("accessTokenTtl", 300))
data_dir = os.environ["DJANGO_OAUTH_DATA_DIR"]

settings.configure(
    DEBUG=False,
    SECRET_KEY=secrets.token_urlsafe(48),
    ALLOWED_HOSTS=[LOOPBACK],
    ROOT_URLCONF=__name__,
    USE_TZ=True,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "oauth2_provider",
    ],
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(data_dir, "oauth.sqlite3"),
            # The server below answers each request on its own thread. What
            # Django's documentation advises for SQLite under concurrent
            # writers: write transactions take the lock up front (so two
            # token requests never fail with "database is locked" half-way),
            # a writer waits up to 20 s for the lock, and WAL lets readers
            # (introspection) proceed while a token is written.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    },
    # Tables straight from the models (what the migrations build; `migrate
    # --run-syncdb` below): replaying the 36 migrations of auth, contenttypes
    # and the toolkit costs seconds of CPU per start.
    MIGRATION_MODULES={"auth": None, "contenttypes": None, "oauth2_provider": None},
    # What Django's testing documentation advises for test servers: a fast
    # hasher for passwords and client secrets. The default (PBKDF2, a
    # million rounds) costs about 0.25 s of CPU per client authentication,
    # i.e. per introspection and per token request, on machines that run
    # many tests at once. Nothing of it shows over HTTP.
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    OAUTH2_PROVIDER={
        "SCOPES": {
            "orders:read": "Read orders",
            "orders:write": "Change orders",
        },
        "ACCESS_TOKEN_EXPIRE_SECONDS": access_token_ttl,
        # RFC 9700 §4.14: keep only a digest of each token at rest (the
        # toolkit's default still stores them in clear until its 4.0).
        # Introspection and revocation look tokens up by that digest.
        "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        # The password grant (RFC 9700 §2.4 discourages it) stays at the
        # toolkit's default, allowed with a warning on stderr: it is how the
        # tests obtain a user's token without a browser.
    },
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": sys.stderr}},
        # Request lines (path and status only: tokens travel in POST bodies),
        # server errors with their traceback, the toolkit's warnings.
        "loggers": {
            "django.server": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
            "oauth2_provider": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    },
)
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402 (needs setup())
from django.core.management import call_command  # noqa: E402
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.urls import include, path  # noqa: E402
from oauth2_provider.models import get_application_model  # noqa: E402

# The toolkit's own URLs where its documentation mounts them: /o/token/,
# /o/introspect/, /o/revoke_token/, ...
urlpatterns = [path("o/", include("oauth2_provider.urls", namespace="oauth2_provider"))]

call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)

Application = get_application_model()


def secret():
    return secrets.token_urlsafe(24)


def application(name, grant_type):
    """A confidential client; the toolkit stores its secret hashed."""
    plain = secret()
    Application.objects.create(
        name=name,
        client_id=name,
        client_secret=plain,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant_type,
    )
    return {"client_id": name, "client_secret": plain}


clients = {
    # The gateway: calls the introspection endpoint with client_secret_basic
    # (IntrospectTokenView accepts any authenticated confidential client).
    "gateway": application("gateway", Application.GRANT_CLIENT_CREDENTIALS),
    # An application that obtains users' tokens (password grant), with or
    # without RFC 8707 resources, and revokes them.
    "app": application("app", Application.GRANT_PASSWORD),
    # A service that obtains tokens for itself: no resource owner.
    "service": application("service", Application.GRANT_CLIENT_CREDENTIALS),
}

users = {}
for username in ("alice", "bob"):
    password = secret()
    get_user_model().objects.create_user(username=username, password=password)
    users[username] = password


# Django's own threaded server (the one runserver and LiveServerTestCase
# use): a thread per connection, HTTP/1.1 keep-alive.
server = ThreadedWSGIServer((LOOPBACK, 0), WSGIRequestHandler, allow_reuse_address=False)
server.set_app(get_wsgi_application())
threading.Thread(target=server.serve_forever, name="http", daemon=True).start()

base = f"http://{LOOPBACK}:{server.server_address[1]}"
print(
    json.dumps(
        {
            "base_url": base,
            "token_endpoint": f"{base}/o/token/",
            "introspection_endpoint": f"{base}/o/introspect/",
            "revocation_endpoint": f"{base}/o/revoke_token/",
            "clients": clients,
            "users": users,
        }
    ),
    flush=True,
)

# Serve until the watcher above ends the process.
watcher.join()
