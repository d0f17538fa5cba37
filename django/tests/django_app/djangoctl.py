"""A real Django app over the test's PostgreSQL database, driven by the Rust tests.

Django, DRF and psycopg come from requirements.txt (installed into .deps by
.ci/run). The database is DJANGO_DATABASE_URL; the secret key DJANGO_SECRET_KEY;
DJANGO_USER_MODEL=accounts.Member swaps in a custom user model keyed by a UUID
(table accounts_member).
Each command does what a Django app does, with Django's own code (ORM, auth,
the test client for a real login), and prints what the test needs on stdout:

    migrate                         Django's own migrations
    create-user NAME PASSWORD       a user; prints its id
    token NAME                      DRF's Token.objects.get_or_create; prints the key
    regenerate-token NAME           delete and create again (what DRF apps do); prints the new key
    delete-token NAME               DRF logout
    login NAME PASSWORD             a real login through the test client; prints the sessionid cookie
    logout SESSIONID                Django's logout of that session (the session row is deleted)
    set-password NAME PASSWORD      user.set_password + save
    set-active NAME 0|1             user.is_active = ...; save
    set-staff NAME                  user.is_staff = True; save
    delete-user NAME                user.delete()
    expire SESSIONID                the session row's expire_date moved to the past
"""
import os
import sys
from urllib.parse import urlparse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".deps"))

url = urlparse(os.environ["DJANGO_DATABASE_URL"])
user_model = os.environ.get("DJANGO_USER_MODEL")
from django.conf import settings

settings.configure(
    SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
    SECRET_KEY_FALLBACKS=[k for k in os.environ.get("DJANGO_SECRET_KEY_FALLBACKS", "").split(",") if k],
    DEBUG=False,
    USE_TZ=True,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "rest_framework",
        "rest_framework.authtoken",
    ]
    + (["accounts"] if user_model else []),
    AUTH_USER_MODEL=user_model or "auth.User",
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    SESSION_ENGINE="django.contrib.sessions.backends.db",
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # fast; the hash is what matters
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "USER": url.username or "postgres",
            "PASSWORD": url.password or "",
            "HOST": url.hostname or "127.0.0.1",
            "PORT": url.port or 5432,
        }
    },
)
urlpatterns = []

import django

django.setup()
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token


def user(name):
    return get_user_model().objects.get(username=name)


def main(command, *args):
    if command == "migrate":
        call_command("migrate", verbosity=0, interactive=False)
    elif command == "create-user":
        print(get_user_model().objects.create_user(args[0], password=args[1]).id)
    elif command == "token":
        print(Token.objects.get_or_create(user=user(args[0]))[0].key)
    elif command == "regenerate-token":
        Token.objects.filter(user=user(args[0])).delete()
        print(Token.objects.create(user=user(args[0])).key)
    elif command == "delete-token":
        Token.objects.filter(user=user(args[0])).delete()
    elif command == "login":
        client = Client()
        assert client.login(username=args[0], password=args[1]), "login refused"
        print(client.cookies[settings.SESSION_COOKIE_NAME].value)
    elif command == "logout":
        from importlib import import_module
        from django.contrib.auth import logout
        from django.http import HttpRequest

        request = HttpRequest()
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(args[0])
        request.user = None
        logout(request)
    elif command == "set-password":
        u = user(args[0])
        u.set_password(args[1])
        u.save()
    elif command == "set-active":
        u = user(args[0])
        u.is_active = args[1] == "1"
        u.save()
    elif command == "set-staff":
        u = user(args[0])
        u.is_staff = True
        u.save()
    elif command == "delete-user":
        user(args[0]).delete()
    elif command == "expire":
        Session.objects.filter(session_key=args[0]).update(expire_date=timezone.now() - timezone.timedelta(seconds=1))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main(*sys.argv[1:])
