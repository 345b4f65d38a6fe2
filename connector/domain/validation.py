"""The answer to "may this FHIR base URL be registered?": each check with a verdict and a sentence."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, computed_field

from connector.domain.endpoint import Environment


class CheckName(str, Enum):
    """The checks, in the order they run."""

    url_syntax = "url_syntax"
    public_address = "public_address"
    metadata = "metadata"
    smart_discovery = "smart_discovery"
    authorize_endpoint = "authorize_endpoint"
    token_endpoint = "token_endpoint"
    cerner_tenant = "cerner_tenant"


class Check(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: CheckName
    # True passed, False failed, None skipped (an earlier check it needs failed, or nothing to check).
    passed: bool | None
    message: str  # a sentence for the admin; never a response body or a stack trace

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> str:
        """"passed" / "failed" / "skipped": what the portal shows."""
        return {True: "passed", False: "failed", None: "skipped"}[self.passed]


class ValidationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_url: str  # normalised (see ``normalize_base_url``), or as given when unusable
    environment: Environment
    checks: list[Check]
    # What validation discovered; None unless the check that finds it passed.
    fhir_version: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    cerner_tenant_id: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Registrable: no check failed (skipped ones are skipped only for a reason that passed)."""
        return all(check.passed is not False for check in self.checks)

    def check(self, name: CheckName | str) -> Check:
        wanted = CheckName(name)
        return next(check for check in self.checks if check.name is wanted)
