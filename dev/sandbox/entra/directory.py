"""The sandbox directory: demo tenants, their users and the connector's app registrations.

Everything here is fictional and stable (fixed GUIDs), so seed data, the admin API's
configuration and the portal's MSAL settings can name these ids literally.

The connector is modelled as Entra expects a multi-tenant SaaS to be registered: a
single-page application (the admin portal, a public client doing auth code + PKCE) and a
web API (the admin HTTP API) that exposes the ``Admin.ReadWrite`` scope and the
``Connector.Admin`` app role. Both apps are usable in every demo tenant, as if each
tenant's admin had consented.

A third registration, the *connector Graph app*, is a confidential client (a client secret)
holding the Microsoft Graph application permission ``OnlineMeetings.ReadWrite.All``, admin-
consented in every demo tenant: it gets app-only tokens with the client credentials grant
and makes the Teams meetings (``dev.sandbox.graph`` checks those tokens). Each tenant also
has a "Virtual Visits Organizer" account, the Teams account that owns the visits' meetings
(the Graph simulator grants it the application access policy by default). Nobody signs in
to it interactively (its sign-in is blocked), so the account picker does not offer it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Role template ids of Entra's built-in directory roles, as they appear in ``wids``.
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
# Every member user carries this "default user" role template id in ``wids``.
DEFAULT_USER_ROLE = "b79fbf4d-3ef9-4689-8143-76b194e85509"

# Tokens for plain ``openid profile`` sign-ins are for Microsoft Graph, as in Entra.
MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Microsoft Graph's application ID URI: app-only tokens carry it as ``aud``.
MICROSOFT_GRAPH_RESOURCE = "https://graph.microsoft.com"
# What a client credentials ``scope`` may name Graph by (``{resource}/.default``).
MICROSOFT_GRAPH_RESOURCES = frozenset({MICROSOFT_GRAPH_RESOURCE, f"{MICROSOFT_GRAPH_RESOURCE}/", MICROSOFT_GRAPH_APP_ID})

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class User:
    oid: str
    display_name: str
    user_principal_name: str
    wids: tuple[str, ...] = (DEFAULT_USER_ROLE,)
    app_roles: tuple[str, ...] = ()  # roles assigned on the connector API
    alias: str | None = None  # "admin", "user", ... so tests can say who they mean
    # False for accounts with "Block sign in" (a meetings account): not offered, not signed in.
    sign_in_allowed: bool = True

    @property
    def is_global_administrator(self) -> bool:
        return GLOBAL_ADMINISTRATOR in self.wids


@dataclass(frozen=True)
class Tenant:
    tid: str
    display_name: str
    domain: str
    users: tuple[User, ...]

    def user(self, ref: str) -> User | None:
        """A user by object id, user principal name or alias."""
        ref = ref.lower()
        for user in self.users:
            if ref in (user.oid, user.user_principal_name.lower(), user.alias):
                return user
        return None


@dataclass(frozen=True)
class AppRegistration:
    client_id: str
    display_name: str
    # Single-page application platform: exact redirect URIs, plus (sandbox only) any
    # http loopback URI so the local portal can run on whatever port it was given.
    spa_redirect_uris: tuple[str, ...] = ()
    allow_loopback_redirects: bool = False
    # Exposed API: identifier URIs ("Application ID URI"), delegated scopes, app roles.
    identifier_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    app_roles: tuple[str, ...] = ()
    # The manifest's groupMembershipClaims: Entra emits ``wids`` only with
    # "DirectoryRole" or "All", so the real API registration must set it too.
    group_membership_claims: str | None = None
    # Confidential client: its client secrets (the values, as Entra shows them once).
    client_secrets: tuple[str, ...] = ()
    # Microsoft Graph application permissions, admin-consented: the ``roles`` of its app-only tokens.
    graph_app_roles: tuple[str, ...] = ()
    # Tenants with a service principal for the app (admin consent); None: every tenant.
    consented_tenants: tuple[str, ...] | None = None

    @property
    def is_spa(self) -> bool:
        return bool(self.spa_redirect_uris) or self.allow_loopback_redirects

    @property
    def is_confidential(self) -> bool:
        return bool(self.client_secrets)

    def consented_in(self, tid: str) -> bool:
        return self.consented_tenants is None or tid in self.consented_tenants

    def service_principal_oid(self, tid: str) -> str:
        """The app's service principal object id in a tenant (``oid``/``sub`` of app-only tokens)."""
        return str(uuid.uuid5(uuid.UUID(tid), f"service-principal:{self.client_id}"))

    @property
    def emits_wids(self) -> bool:
        return self.group_membership_claims in ("DirectoryRole", "All")

    def accepts_redirect_uri(self, uri: str) -> bool:
        if uri in self.spa_redirect_uris:
            return True
        if not self.allow_loopback_redirects:
            return False
        parts = urlsplit(uri)
        return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS and not parts.fragment


@dataclass(frozen=True)
class Directory:
    tenants: tuple[Tenant, ...]
    apps: tuple[AppRegistration, ...]
    _by_tid: dict[str, Tenant] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_tid", {t.tid: t for t in self.tenants})

    def tenant(self, ref: str) -> Tenant | None:
        """A tenant by id or by its domain name (Entra accepts both in authority paths)."""
        ref = ref.lower()
        return self._by_tid.get(ref) or next((t for t in self.tenants if t.domain == ref), None)

    def app(self, client_id: str) -> AppRegistration | None:
        return next((a for a in self.apps if a.client_id == client_id.lower()), None)

    def api_for_resource(self, resource: str) -> AppRegistration | None:
        """The app exposing ``resource`` (an identifier URI or its client id)."""
        return next(
            (a for a in self.apps if a.scopes and resource in (a.client_id, *a.identifier_uris)),
            None,
        )

    def find_user(self, oid: str) -> tuple[Tenant, User] | None:
        for tenant in self.tenants:
            user = tenant.user(oid)
            if user is not None and user.oid == oid:
                return tenant, user
        return None


# --- the demo directory -------------------------------------------------------------

CONTOSO_TID = "e5076923-6a11-40df-b594-eb890ad6bea0"
FABRIKAM_TID = "650cc45e-e55f-4c4a-8140-98f1ceaac4a3"
PORTAL_CLIENT_ID = "89c82233-ff08-4459-b8fa-74a51fe28b50"
API_CLIENT_ID = "04e9dab5-fed0-4dc6-85ff-2d6bc8f27715"
API_APP_ID_URI = "api://connector-local"
API_SCOPE = "Admin.ReadWrite"
API_ADMIN_ROLE = "Connector.Admin"
# The connector's Graph app (confidential client, app-only): a sandbox secret, valid nowhere else.
GRAPH_APP_CLIENT_ID = "6f0d2a4e-3c1b-4e8a-9b57-2d8c4f1a7e63"
GRAPH_APP_CLIENT_SECRET = "sbx8Q~sandbox-graph-app-secret-not-real-0000"
ONLINE_MEETINGS_ROLE = "OnlineMeetings.ReadWrite.All"
# The Teams account that owns the visits' meetings, one per demo tenant.
CONTOSO_ORGANIZER_OID = "5d3f1e2a-8b4c-4f6d-a1e9-7c2b3d4e5f60"
FABRIKAM_ORGANIZER_OID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def demo_directory() -> Directory:
    """Two clinics, each with a Global Administrator, an ordinary user and a meetings account."""
    admin_wids = (GLOBAL_ADMINISTRATOR, DEFAULT_USER_ROLE)
    contoso = Tenant(
        tid=CONTOSO_TID,
        display_name="Contoso Clinic",
        domain="contoso-clinic.example",
        users=(
            User("c6ee2195-2f43-43df-9261-340dddf3bb56", "Avery Lindqvist",
                 "avery.lindqvist@contoso-clinic.example", admin_wids, alias="admin"),
            User("80b79bca-a426-4316-920a-c761b7ab6f47", "Jordan Okafor",
                 "jordan.okafor@contoso-clinic.example", alias="user"),
            # Not a directory admin, but holds the connector's own admin app role.
            User("c88713b1-cca6-4110-99a0-b172e7abd757", "Riley Moreau",
                 "riley.moreau@contoso-clinic.example", app_roles=(API_ADMIN_ROLE,),
                 alias="app-admin"),
            User(CONTOSO_ORGANIZER_OID, "Virtual Visits Organizer",
                 "virtual-visits@contoso-clinic.example", alias="organizer", sign_in_allowed=False),
        ),
    )
    fabrikam = Tenant(
        tid=FABRIKAM_TID,
        display_name="Fabrikam Health",
        domain="fabrikam-health.example",
        users=(
            User("11ba8957-9d0d-41ad-9b06-7b107e36e376", "Samira Haddad",
                 "samira.haddad@fabrikam-health.example", admin_wids, alias="admin"),
            User("38fd7315-9365-4bd3-a33e-e41dbfa02a36", "Theo Brandt",
                 "theo.brandt@fabrikam-health.example", alias="user"),
            User(FABRIKAM_ORGANIZER_OID, "Virtual Visits Organizer",
                 "virtual-visits@fabrikam-health.example", alias="organizer", sign_in_allowed=False),
        ),
    )
    portal = AppRegistration(
        client_id=PORTAL_CLIENT_ID,
        display_name="Virtual Visits Connector admin portal",
        allow_loopback_redirects=True,
    )
    api = AppRegistration(
        client_id=API_CLIENT_ID,
        display_name="Virtual Visits Connector admin API",
        identifier_uris=(API_APP_ID_URI,),
        scopes=(API_SCOPE,),
        app_roles=(API_ADMIN_ROLE,),
        group_membership_claims="DirectoryRole",
    )
    graph_app = AppRegistration(
        client_id=GRAPH_APP_CLIENT_ID,
        display_name="Virtual Visits Connector meetings",
        client_secrets=(GRAPH_APP_CLIENT_SECRET,),
        graph_app_roles=(ONLINE_MEETINGS_ROLE,),
    )
    return Directory(tenants=(contoso, fabrikam), apps=(portal, api, graph_app))
