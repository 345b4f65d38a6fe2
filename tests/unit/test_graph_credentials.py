"""A managed identity makes meetings in its own tenant only: another tenant's launch is refused."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
import json
from types import SimpleNamespace

import pytest

from connector.adapters.graph.credentials import HomeTenantOnly
from connector.errors import ConfigurationError

HOME = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-8888-7777-6666-555555555555"


def token_for(tid: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"tid": tid, "aud": "https://graph.microsoft.com"}).encode())
    return f"eyJhbGciOiJSUzI1NiJ9.{payload.rstrip(b'=').decode()}.c2lnbmF0dXJl"


class FakeManagedIdentity:
    def __init__(self, tid: str):
        self.tid = tid
        self.calls = 0

    async def get_token(self, *scopes, **kwargs):
        self.calls += 1
        return SimpleNamespace(token=token_for(self.tid), expires_on=0)

    async def close(self):
        pass


def run(coroutine):
    """On a thread of its own: Playwright's sync API may hold a running loop on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_the_home_tenant_gets_its_token():
    inner = FakeManagedIdentity(HOME)
    token = run(HomeTenantOnly(inner, HOME.upper()).get_token("https://graph.microsoft.com/.default"))
    assert token.token == token_for(HOME) and inner.calls == 1


def test_another_tenant_is_refused_instead_of_using_the_home_tenant():
    with pytest.raises(ConfigurationError, match="multi-tenant app registration"):
        run(HomeTenantOnly(FakeManagedIdentity(HOME), OTHER).get_token("https://graph.microsoft.com/.default"))
