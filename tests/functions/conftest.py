"""The functions tier: call blueprints in-process with ``func.HttpRequest``, no host, no sockets of ours."""

from __future__ import annotations

import pytest

from connector.composition import container
from connector.settings import get_settings


def user_function(builder):
    """The plain Python function behind a v2 decorator (what the worker would call)."""
    return builder.build().get_user_function()


@pytest.fixture(autouse=True)
def fresh_settings():
    """Each test builds settings and adapters from its own environment."""
    get_settings.cache_clear()
    container.cache_clear()
    yield
    get_settings.cache_clear()
    container.cache_clear()
