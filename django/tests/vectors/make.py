"""Signature vectors from a real Django, for the Rust tests of ws-token-auth-django.

    pip install --target /tmp/djdeps "Django==5.2.*"
    PYTHONPATH=/tmp/djdeps python3 make.py > django-5.2.json

Each vector is what Django's own code produced: session data as the database
session backend stores it (django.core.signing.dumps with the sessions' salt,
JSONSerializer, compress=True), and the session auth hash of a password hash
(AbstractBaseUser.get_session_auth_hash).
"""
import json

from django.conf import settings

settings.configure(SECRET_KEY="django-insecure-vector-key-0123456789", SECRET_KEY_FALLBACKS=["old-vector-key"],
                   USE_TZ=True, INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                                               "django.contrib.sessions"])
import django

django.setup()
from django.contrib.sessions.backends.db import SessionStore
from django.core import signing
from django.utils.crypto import salted_hmac

SALT = "django.contrib.sessions." + SessionStore.__qualname__
PASSWORD = "pbkdf2_sha256$1000000$abcdefghijklmnopqrstuv$c2lnbmF0dXJlLW9mLWEtcGFzc3dvcmQtaGFzaA=="


def session(data, key=None):
    return signing.dumps(data, key=key, salt=SALT, serializer=signing.JSONSerializer, compress=True)


def auth_hash(password, key):
    return salted_hmac("django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash", password,
                       secret=key, algorithm="sha256").hexdigest()


small = {"_auth_user_id": "7", "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
         "_auth_user_hash": auth_hash(PASSWORD, settings.SECRET_KEY)}
big = dict(small, cart=["item-%d" % i for i in range(40)])  # long enough to be compressed
vectors = {
    "django": django.get_version(),
    "salt": SALT,
    "secret_key": settings.SECRET_KEY,
    "fallback_key": "old-vector-key",
    "password": PASSWORD,
    "auth_hash": auth_hash(PASSWORD, settings.SECRET_KEY),
    "auth_hash_fallback": auth_hash(PASSWORD, "old-vector-key"),
    "sessions": [
        {"what": "small", "signed": session(small), "data": small},
        {"what": "tiny, not compressed", "signed": session({"_auth_user_id": "9"}), "data": {"_auth_user_id": "9"}},
        {"what": "compressed", "signed": session(big), "data": big},
        {"what": "signed with the fallback key", "signed": session(small, key="old-vector-key"), "data": small},
        {"what": "unicode", "signed": session({"_auth_user_id": "8", "name": "Zoë ✓"}),
         "data": {"_auth_user_id": "8", "name": "Zoë ✓"}},
    ],
}
assert vectors["sessions"][2]["signed"].startswith("."), "the big vector must be compressed"
assert not vectors["sessions"][1]["signed"].startswith("."), "the tiny vector must not be compressed"
assert SessionStore().decode(vectors["sessions"][3]["signed"]) == small
print(json.dumps(vectors, indent=1, ensure_ascii=False))
