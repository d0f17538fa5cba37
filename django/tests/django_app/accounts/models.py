"""A custom AUTH_USER_MODEL keyed by a UUID, as many Django apps have one
(DJANGO_USER_MODEL=accounts.Member for djangoctl.py)."""
import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class Member(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
