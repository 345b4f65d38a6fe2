"""infra/ rendered: main.bicep's stamps loop evaluated over main.parameters.json, without the Bicep CLI.

A small evaluator walks the pycep-parser trees of main.bicep and, through its modules, stamp.bicep,
network.bicep and portal.bicep: parameters (the file's values, the declared defaults), variables,
loops, conditions and the handful of Bicep functions these files use. Interpolated strings, which
pycep leaves as text, are parsed expression by expression with pycep too. What only Azure knows
(an identity's client id, App Insights' connection string) stays an opaque reference, printed as
``<symbol.path>``; a Function App's host name is <name>.azurewebsites.net, as in Azure.
``uniqueString`` is a stand-in (13 characters of the same alphabet, not Azure's hash): the names
are checked for shape and distinctness, not for their exact value.

Then, per stamp and for both network modes: its own storage account and Key Vault (distinct
names, Azure's naming rules), app settings free of keys, passwords and connection strings (Key
Vault references into the stamp's own vault, and the App Insights connection string that only
names the ingestion endpoint, are fine), network isolation as .checkov.yaml promises, the Event
Grid subscription and the portal's CORS origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from functools import cache
from pathlib import Path

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PARAMETERS = INFRA / "main.parameters.json"

SUBSCRIPTION_ID = "00000000-0000-4000-8000-000000000001"
TENANT_ID = "00000000-0000-4000-8000-000000000002"
ADMIN_API_CLIENT_ID = "11111111-1111-4111-8111-111111111111"
PORTAL_CLIENT_ID = "22222222-2222-4222-8222-222222222222"
# Secure values are sentinels: a rendered app setting or output that contains one leaks a secret.
EVENTS_KEY = "SENTINEL-acs-events-key-0123456789abcdef0123456789abcdef"
OPTOUT_KEY = "SENTINEL-optout-key-0123456789abcdef0123456789abcdef012"
NEW_GUID_PREFIX = "SENTINEL-newguid-"
ENVIRONMENT = {
    "name": "AzureCloud",
    "suffixes": {"storage": "core.windows.net", "keyvaultDns": ".vault.azure.net"},
    "authentication": {"loginEndpoint": "https://login.microsoftonline.com/"},
}
# Runtime properties whose value Azure derives from the name (the rest stay opaque references).
KNOWN_PROPERTIES = {
    ("Microsoft.Web/sites", "properties.defaultHostName"): "{name}.azurewebsites.net",
    ("Microsoft.Web/staticSites", "properties.defaultHostname"): "{name}.azurestaticapps.net",
    ("Microsoft.KeyVault/vaults", "properties.vaultUri"): "https://{name}.vault.azure.net/",
}
STORAGE_NAME = re.compile(r"[a-z0-9]{3,24}")
KEY_VAULT_NAME = re.compile(r"[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]")
ALWAYS_ALLOWED_SETTINGS = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
# Optional secrets the operator puts in the stamp's vault under these names (infra/README.md).
OPERATOR_SECRETS = {"graph-notification-certificate", "graph-notification-key", "client-assertion-key",
                    "client-assertion-previous-key", "client-assertion-next-key"}
SECRET_NAME = re.compile(r"key|secret|password|passwd|connection|connstr|sas|token|credential", re.IGNORECASE)
SECRET_VALUE = re.compile(r"AccountKey=|SharedAccessSignature|[?&]sig=|Password=|SENTINEL", re.IGNORECASE)


BINARY = {
    "equals": lambda a, b: a == b, "not_equals": lambda a, b: a != b, "greater_than": lambda a, b: a > b,
    "greater_than_or_equals": lambda a, b: a >= b, "less_than": lambda a, b: a < b,
    "less_than_or_equals": lambda a, b: a <= b, "and": lambda a, b: a and b, "or": lambda a, b: a or b,
    "coalesce": lambda a, b: a if a is not None else b, "add": lambda a, b: a + b, "minus": lambda a, b: a - b,
}


class Ref:
    """A value only Azure knows at deployment time: kept as the expression that names it."""

    def __init__(self, path: str):
        self.path = path

    def get(self, key) -> Ref:
        return Ref(f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}")

    def __str__(self) -> str:
        return f"<{self.path}>"

    __repr__ = __str__

    def __eq__(self, other) -> bool:
        return isinstance(other, Ref) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)


class Resource:
    """One instance of a resource (or one iteration of a resource loop)."""

    def __init__(self, template: Template, symbol: str, spec: dict, body: dict, scope: dict):
        self.template, self.symbol, self.type, self._body, self._scope = template, symbol, spec["type"], body, scope

    @property
    def name(self) -> str:
        return self.template.ev(self._body["name"], self._scope)

    @cache
    def body(self) -> dict:
        skip = {"dependsOn", "parent", "scope"}
        return {k: v if k in skip else self.template.ev(v, self._scope) for k, v in self._body.items()}

    def get(self, key):
        if key == "name":
            return self.name
        if key == "id":
            return Ref(f"{self.symbol}.id")
        return ResourceProperty(self, key)


class ResourceProperty(Ref):
    def __init__(self, resource: Resource, path: str):
        super().__init__(f"{resource.symbol}.{path}")
        self.resource, self.sub = resource, path

    def get(self, key):
        path = f"{self.sub}.{key}"
        known = KNOWN_PROPERTIES.get((self.resource.type, path))
        return known.format(name=self.resource.name) if known else ResourceProperty(self.resource, path)


class Module:
    def __init__(self, symbol: str, template: Template, scope_name):
        self.symbol, self.template, self.scope_name = symbol, template, scope_name

    def get(self, key):
        if key == "outputs":
            return self.template.outputs()
        raise KeyError(f"module {self.symbol} has no {key}")


def get(value, key):
    if isinstance(value, (Ref, Resource, Module)):
        return value.get(key)
    if isinstance(value, dict):
        if key not in value:
            raise KeyError(f"no property {key!r} in {sorted(value)}")
        return value[key]
    if isinstance(value, list):
        return value[key]
    raise TypeError(f"cannot read {key!r} of {value!r}")


def text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def unique_string(*parts) -> str:
    digest = hashlib.sha256("|".join(map(text, parts)).encode()).digest()
    return base64.b32encode(digest).decode().lower()[:13].replace("=", "a")


def split_interpolation(source: str) -> list[tuple[str, str]]:
    """'a${x}b' -> [('text', 'a'), ('expr', 'x'), ('text', 'b')], nested quotes and braces respected."""
    parts, i, start = [], 0, 0
    while i < len(source):
        if source.startswith("${", i):
            parts.append(("text", source[start:i]))
            depth, j, quoted = 1, i + 2, False
            while depth:
                ch = source[j]
                if ch == "'":
                    quoted = not quoted
                elif not quoted and ch == "{":
                    depth += 1
                elif not quoted and ch == "}":
                    depth -= 1
                j += 1
            parts.append(("expr", source[i + 2:j - 1]))
            i = start = j
        else:
            i += 1
    parts.append(("text", source[start:]))
    return [p for p in parts if p != ("text", "")]


@cache
def expression(source: str):
    return BicepParser().parse(text=f"var x = {source}\n")["variables"]["x"]["value"]


@cache
def tree(path: Path) -> dict:
    return BicepParser().parse(file_path=path)


class Template:
    """One .bicep file with its parameter values; evaluates anything in it on demand."""

    def __init__(self, path: Path, params: dict, resource_group: dict | None = None):
        self.path = path
        parsed = tree(path)
        # pycep leaves out what a file does not declare.
        self.tree = {k: parsed.get(k) or {} for k in ("parameters", "variables", "resources", "modules", "outputs")}
        self._variables: dict = {}
        self.resource_group = resource_group or {"name": "subscription-scope", "location": "nowhere"}
        self.newguids = 0
        declared = self.tree["parameters"]
        unknown = set(params) - set(declared)
        assert not unknown, f"{path.name} has no parameters {sorted(unknown)}"
        self.params = {}
        for name, spec in declared.items():
            if name in params:
                value = params[name]
            else:
                assert spec["default"] is not None, f"{path.name}: {name} is required"
                value = self.ev(spec["default"], {})
            self.params[name] = self.checked(name, spec, value)

    def checked(self, name: str, spec: dict, value):
        """What ARM checks on a parameter value: its type and decorators."""
        if isinstance(value, Ref):
            return value  # known in Azure only (a resource id): nothing to check here
        kinds = {"string": str, "int": int, "bool": bool, "array": list, "object": dict}
        assert isinstance(value, kinds[spec["type"]]), f"{self.path.name}: {name}={value!r} is not {spec['type']}"
        for decorator in spec["decorators"]:
            kind, argument = decorator["type"], decorator.get("argument")
            if kind == "allowed":
                assert value in argument, f"{self.path.name}: {name}={value!r} not in {argument}"
            elif kind == "min_length":
                assert len(value) >= argument, f"{self.path.name}: {name} shorter than {argument}"
            elif kind == "max_length":
                assert len(value) <= argument, f"{self.path.name}: {name} longer than {argument}"
            elif kind == "min_value":
                assert value >= argument, f"{self.path.name}: {name} below {argument}"
            elif kind == "max_value":
                assert value <= argument, f"{self.path.name}: {name} above {argument}"
        return value

    # --- symbols ----------------------------------------------------------------------------

    def lookup(self, name: str, scope: dict):
        if name in scope:
            return True, scope[name]
        if name in self.params:
            return True, self.params[name]
        if name in self.tree["variables"]:
            if name not in self._variables:
                self._variables[name] = self.ev(self.tree["variables"][name]["value"], {})
            return True, self._variables[name]
        if name in self.tree["resources"]:
            return True, self.resources(name)
        if name in self.tree["modules"]:
            return True, self.modules(name)
        return False, None

    def instances(self, node: dict, scope: dict):
        """(body, scope) for each instance of a resource or module declaration: loop, `if` or plain."""
        config = node["config"]
        if "loop_type" in config:
            loop = config["loop_type"]
            detail = loop["detail"]
            items = self.ev(detail["array_name"], scope)
            out = []
            for index, item in enumerate(items):
                inner = {**scope, detail["item_name"]: item}
                if "index_name" in detail:
                    inner[detail["index_name"]] = index
                if config.get("condition") is None or self.ev(config["condition"], inner):
                    out.append((config["config"], inner))
            return out, True
        if "condition" in config:
            return ([(config["config"], scope)] if self.ev(config["condition"], scope) else []), False
        return [(config, scope)], False

    @cache
    def resources(self, symbol: str):
        spec = self.tree["resources"][symbol]
        made, is_loop = self.instances(spec, {})
        found = [Resource(self, symbol, spec, body, scope) for body, scope in made]
        return found if is_loop else (found[0] if found else None)

    @cache
    def modules(self, symbol: str):
        spec = self.tree["modules"][symbol]
        made, is_loop = self.instances(spec, {})
        found = []
        for body, scope in made:
            params = {k: self.ev(v, scope) for k, v in body.get("params", {}).items()}
            target = get_scope = self.ev(body["scope"], scope) if "scope" in body else None
            group = ({"name": target.name, "location": target.body()["location"]} if isinstance(get_scope, Resource)
                     else self.resource_group)
            found.append(Module(symbol, Template(self.path.parent / spec["detail"]["path"], params, group),
                                group["name"]))
        return found if is_loop else (found[0] if found else None)

    def outputs(self) -> dict:
        return {name: self.ev(spec["value"], {}) for name, spec in self.tree["outputs"].items()}

    def all_resources(self) -> list[Resource]:
        out = []
        for symbol in self.tree["resources"]:
            found = self.resources(symbol)
            out.extend(found if isinstance(found, list) else [found] if found else [])
        return out

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.all_resources() if r.type.lower() == resource_type.lower()]

    # --- expressions -------------------------------------------------------------------------

    def ev(self, node, scope: dict):
        if isinstance(node, str):
            found, value = self.lookup(node, scope)
            if found:
                return value
            if "${" in node:
                parts = split_interpolation(node)
                values = [self.ev(expression(p), scope) if kind == "expr" else p for kind, p in parts]
                if len(values) == 1 and parts[0][0] == "expr":
                    return values[0]
                return "".join(text(v) for v in values)
            return node
        if node is None or isinstance(node, (bool, int, float)):
            return node
        if isinstance(node, list):
            return [self.ev(item, scope) for item in node]
        assert isinstance(node, dict), node
        if "operator" in node and isinstance(node["operator"], dict) and "operands" in node["operator"]:
            return self.operator(node["operator"]["type"], node["operator"]["operands"], scope)
        if "function" in node and isinstance(node["function"], dict) and "type" in node["function"]:
            return self.function(node["function"]["type"], node["function"].get("parameters") or {}, scope)
        if "loop_type" in node:
            made, _ = self.instances({"config": node}, scope)
            return [self.ev(body, inner) for body, inner in made]
        return {self.key(k, scope): self.ev(v, scope) for k, v in node.items()}

    def key(self, key: str, scope: dict) -> str:
        if len(key) >= 2 and key[0] == key[-1] == "'":
            return text(self.ev(key[1:-1], {})) if "${" not in key else self.interpolate(key[1:-1], scope)
        return key

    def interpolate(self, source: str, scope: dict) -> str:
        return "".join(text(self.ev(expression(p), scope)) if kind == "expr" else p
                       for kind, p in split_interpolation(source))

    def chain(self, value, node, scope: dict):
        """Applies a property chain (pycep nests it to the right: a.b[1].c) to a value."""
        if isinstance(node, str):
            return get(value, node)
        op = node["operator"]
        a, b = op["operands"]["operand_1"], op["operands"]["operand_2"]
        if op["type"] == "property_accessor":
            return self.chain(self.chain(value, a, scope), b, scope)
        if op["type"] == "index_accessor":
            return get(self.chain(value, a, scope), self.ev(b, scope))
        # pycep binds `a.b == c` as a.(b == c): the operator applies to the end of the chain.
        if op["type"] in BINARY:
            return BINARY[op["type"]](self.chain(value, a, scope), self.ev(b, scope))
        raise AssertionError(f"not a property path: {node}")

    def operator(self, kind: str, operands: dict, scope: dict):
        if kind == "conditional":
            chosen = "true_value" if self.ev(operands["condition"], scope) else "false_value"
            return self.ev(operands[chosen], scope)
        if kind == "property_accessor":
            return self.chain(self.ev(operands["operand_1"], scope), operands["operand_2"], scope)
        if kind == "index_accessor":
            return get(self.ev(operands["operand_1"], scope), self.ev(operands["operand_2"], scope))
        if kind == "not":
            return not self.ev(operands["bool_value"], scope)
        assert kind in BINARY, f"operator {kind} is not rendered here"
        return BINARY[kind](self.ev(operands["operand_1"], scope), self.ev(operands["operand_2"], scope))

    def function(self, kind: str, parameters: dict, scope: dict):
        args = [self.ev(v, scope) for v in parameters.values() if v is not None]
        if kind == "subscription":
            return {"id": f"/subscriptions/{SUBSCRIPTION_ID}", "subscriptionId": SUBSCRIPTION_ID,
                    "tenantId": TENANT_ID}
        if kind == "resource_group":
            return self.resource_group
        if kind == "environment":
            return ENVIRONMENT
        if kind == "new_guid":
            self.newguids += 1
            return f"{NEW_GUID_PREFIX}{self.newguids}"
        if kind == "subscription_resource_id":
            resource_type = self.ev(parameters["resource_type"], scope)
            names = [self.ev(v, scope) for k, v in parameters.items() if k.startswith("resource_name") and v]
            return f"/subscriptions/{SUBSCRIPTION_ID}/providers/{resource_type}/{'/'.join(names)}"
        simple = {
            "to_lower": lambda s: s.lower(),
            "unique_string": unique_string,
            "take": lambda v, n: v[:n],
            "guid": lambda *p: str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(map(text, p)))),
            "empty": lambda v: v is None or len(v) == 0,
            "base64": lambda s: base64.b64encode(s.encode()).decode(),
            "string": lambda v: v if isinstance(v, str) else text(v),
            "contains": lambda c, item: item in c,
            "replace": lambda s, old, new: s.replace(old, new),
            "union": lambda *parts: ({k: v for p in parts for k, v in p.items()} if isinstance(parts[0], dict)
                                     else list(dict.fromkeys(x for p in parts for x in p))),
        }
        assert kind in simple, f"function {kind} is not rendered here"
        return simple[kind](*args)


# --- rendering main.bicep from the parameter file ----------------------------------------------


def file_parameters() -> dict:
    """main.parameters.json as azd passes it with an empty environment: ${NAME=default} -> default."""
    values = {}
    for name, spec in json.loads(PARAMETERS.read_text())["parameters"].items():
        value = spec["value"]
        match = re.fullmatch(r"\$\{[A-Z_]+=(.*)\}", value) if isinstance(value, str) else None
        values[name] = json.loads(match.group(1)) if match else value
    return values


def render(**overrides) -> Template:
    params = {**file_parameters(), "adminApiClientId": ADMIN_API_CLIENT_ID, "portalClientId": PORTAL_CLIENT_ID,
              "acsEventsKey": EVENTS_KEY, "optoutKey": OPTOUT_KEY, **overrides}
    return Template(INFRA / "main.bicep", params)


def stamps_of(main: Template) -> list[Template]:
    return [module.template for module in main.modules("stamp")]


def one(template: Template, resource_type: str) -> Resource:
    found = template.of_type(resource_type)
    assert len(found) == 1, f"{template.path.name}: {len(found)} {resource_type}"
    return found[0]


def app_settings(stamp: Template) -> dict:
    configs = [r for r in stamp.of_type("Microsoft.Web/sites/config") if r.name == "appsettings"]
    assert len(configs) == 1
    return configs[0].body()["properties"]


def every_stamp(**fields) -> list[dict]:
    return [{**entry, **fields} for entry in file_parameters()["stamps"]]


VARIANTS = {
    "public": {},
    "isolated": {"stamps": every_stamp(networkIsolation=True)},
    "isolated-with-events": {"stamps": every_stamp(networkIsolation=True), "acsEventSubscriptions": True,
                             "alwaysReadyInstances": 2},
}


def isolated(name: str) -> bool:
    return any(s.get("networkIsolation") for s in VARIANTS[name].get("stamps", file_parameters()["stamps"]))


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request):
    main = render(**VARIANTS[request.param])
    return request.param, main, stamps_of(main)


# --- the tests ---------------------------------------------------------------------------------


def test_the_parameter_file_renders_a_stamp_per_region_each_in_its_own_group(variant):
    _, main, stamps = variant
    regions = [s["region"] for s in file_parameters()["stamps"]]
    assert len(stamps) == len(regions) >= 2
    assert [s.params["region"] for s in stamps] == regions
    groups = [m.scope_name for m in main.modules("stamp")]
    assert groups == [f"rg-{main.params['namePrefix']}-{r}" for r in regions]
    locations = [s.params["location"] for s in stamps]
    assert len(set(locations)) == len(locations)


def test_each_stamp_has_its_own_storage_account_and_key_vault(variant):
    _, _, stamps = variant
    storage = [one(s, "Microsoft.Storage/storageAccounts").name for s in stamps]
    vaults = [one(s, "Microsoft.KeyVault/vaults").name for s in stamps]
    apps = [one(s, "Microsoft.Web/sites").name for s in stamps]
    for names in (storage, vaults, apps):
        assert len(set(names)) == len(names), names
    # Azure's naming rules (checkov's CKV_AZURE_43 cannot evaluate computed names: .checkov.yaml).
    for name in storage:
        assert STORAGE_NAME.fullmatch(name), name
    for name in vaults:
        assert KEY_VAULT_NAME.fullmatch(name), name
    for stamp in stamps:
        region = stamp.params["region"]
        assert region in one(stamp, "Microsoft.Storage/storageAccounts").name
        assert one(stamp, "Microsoft.Web/sites").name.startswith(f"func-vvc-{region}-")


def test_no_app_setting_holds_a_key_password_or_connection_string(variant):
    _, _, stamps = variant
    for stamp in stamps:
        vault = one(stamp, "Microsoft.KeyVault/vaults").name
        written = stamp.of_type("Microsoft.KeyVault/vaults/secrets")
        secrets = {r.name for r in written}
        values = [text(r.body()["properties"]["value"]) for r in written]
        assert all("SENTINEL" in v or "U0VOVElORUw" in v for v in values), "every secret comes from a sentinel"
        for name, value in app_settings(stamp).items():
            rendered = text(value)
            assert not SECRET_VALUE.search(rendered), f"{name} carries secret material: {rendered}"
            assert not any(v in rendered for v in values), f"{name} carries a secret's value"
            if name in ALWAYS_ALLOWED_SETTINGS:
                # Only names the ingestion endpoint, which takes Entra tokens only (local auth off).
                assert isinstance(value, Ref) and value.path == "appInsights.properties.ConnectionString"
                assert one(stamp, "Microsoft.Insights/components").body()["properties"]["DisableLocalAuth"] is True
                continue
            reference = re.fullmatch(r"@Microsoft\.KeyVault\(VaultName=([^;]+);SecretName=([^)]+)\)", rendered)
            if reference:
                # A pointer into this stamp's own vault, to a secret this deployment writes or
                # one the operator puts there.
                assert reference.group(1) == vault, (name, rendered)
                assert reference.group(2) in secrets | OPERATOR_SECRETS, (name, rendered)
                continue
            assert not SECRET_NAME.search(name) or name.startswith("AzureWebJobsStorage__"), \
                f"secret-shaped setting {name} = {rendered}"
        # The secret values themselves sit in the vault, and nowhere in the outputs.
        outputs = text(stamp.outputs())
        assert not SECRET_VALUE.search(outputs) and not any(v in outputs for v in values)


def test_main_outputs_carry_no_secret(variant):
    _, main, _ = variant
    outputs = main.outputs()
    assert not SECRET_VALUE.search(text(outputs))
    for secret in (EVENTS_KEY, OPTOUT_KEY, base64.b64encode(OPTOUT_KEY.encode()).decode()):
        assert secret not in text(outputs)


def test_network_isolation_closes_storage_and_key_vault(variant):
    name, _, stamps = variant
    for stamp in stamps:
        app = one(stamp, "Microsoft.Web/sites").body()["properties"]
        for resource_type in ("Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"):
            props = one(stamp, resource_type).body()["properties"]
            expected = ("Disabled", "Deny") if isolated(name) else ("Enabled", "Allow")
            assert (props["publicNetworkAccess"], props["networkAcls"]["defaultAction"]) == expected, resource_type
        # The app's own endpoints stay public either way: PowerChart, phones, Graph, Event Grid.
        assert app["publicNetworkAccess"] == "Enabled"
        network = stamp.modules("network")
        if not isolated(name):
            assert network is None and app["virtualNetworkSubnetId"] is None
            continue
        net = network.template
        assert app["virtualNetworkSubnetId"] == net.outputs()["appSubnetId"]
        vnet = one(net, "Microsoft.Network/virtualNetworks").body()["properties"]
        subnets = {s["name"]: s["properties"] for s in vnet["subnets"]}
        delegations = [d["properties"]["serviceName"] for d in subnets["snet-app"]["delegations"]]
        assert delegations == ["Microsoft.App/environments"], "Flex Consumption VNet integration"
        assert all("networkSecurityGroup" in s for s in subnets.values())
        storage_id = Ref("storage.id")
        vault_id = Ref("keyVault.id")
        endpoints = {}
        for endpoint in net.of_type("Microsoft.Network/privateEndpoints"):
            (connection,) = endpoint.body()["properties"]["privateLinkServiceConnections"]
            (group,) = connection["properties"]["groupIds"]
            endpoints[group] = connection["properties"]["privateLinkServiceId"]
        assert endpoints == {"blob": storage_id, "table": storage_id, "queue": storage_id, "vault": vault_id}
        zones = {z.name for z in net.of_type("Microsoft.Network/privateDnsZones")}
        assert zones == {"privatelink.blob.core.windows.net", "privatelink.table.core.windows.net",
                         "privatelink.queue.core.windows.net", "privatelink.vaultcore.azure.net"}
        links = net.of_type("Microsoft.Network/privateDnsZones/virtualNetworkLinks")
        assert len(links) == len(zones)
        assert all(link.body()["properties"]["virtualNetwork"]["id"] == Ref("vnet.id") for link in links)
        assert len(net.of_type("Microsoft.Network/privateEndpoints/privateDnsZoneGroups")) == len(endpoints)


def test_network_isolation_is_chosen_per_stamp_and_off_by_default():
    stamps = file_parameters()["stamps"]
    assert not any(s.get("networkIsolation") for s in stamps), "a first deployment works from anywhere"
    mixed = [{**stamps[0], "networkIsolation": True}, *({k: v for k, v in s.items() if k != "networkIsolation"}
                                                       for s in stamps[1:])]
    rendered = stamps_of(render(stamps=mixed))
    assert [s.params["networkIsolation"] for s in rendered] == [True] + [False] * (len(stamps) - 1)
    assert rendered[0].modules("network") is not None and rendered[1].modules("network") is None


def test_acs_sms_events_reach_each_stamps_webhook_with_its_key(variant):
    from connector.adapters.acs.events import MAX_EVENTS
    from connector.functions.acs_events import KEY_HEADER

    name, _, stamps = variant
    enabled = VARIANTS[name].get("acsEventSubscriptions", False)
    for stamp in stamps:
        topic = one(stamp, "Microsoft.EventGrid/systemTopics").body()
        assert topic["properties"] == {"source": Ref("communication.id"),
                                       "topicType": "Microsoft.Communication.CommunicationServices"}
        subscriptions = stamp.of_type("Microsoft.EventGrid/systemTopics/eventSubscriptions")
        # Off until the code runs (Event Grid validates the webhook when the subscription is made).
        assert len(subscriptions) == (1 if enabled else 0)
        setting = app_settings(stamp)["CONNECTOR_ACS_EVENTS_KEY"]
        secret = next(r for r in stamp.of_type("Microsoft.KeyVault/vaults/secrets") if r.name in setting)
        assert secret.body()["properties"]["value"] == EVENTS_KEY
        if not enabled:
            continue
        props = subscriptions[0].body()["properties"]
        app = one(stamp, "Microsoft.Web/sites").name
        destination = props["destination"]
        assert destination["endpointType"] == "WebHook"
        assert destination["properties"]["endpointUrl"] == f"https://{app}.azurewebsites.net/api/events/acs"
        assert destination["properties"]["maxEventsPerBatch"] <= MAX_EVENTS
        (header,) = destination["properties"]["deliveryAttributeMappings"]
        assert header == {"name": KEY_HEADER, "type": "Static", "properties": {"value": EVENTS_KEY, "isSecret": True}}
        assert sorted(props["filter"]["includedEventTypes"]) == [
            "Microsoft.Communication.SMSDeliveryReportReceived", "Microsoft.Communication.SMSReceived"]
        assert props["eventDeliverySchema"] == "EventGridSchema"


def test_the_portal_is_hosted_and_every_stamp_allows_its_origin(variant):
    _, main, stamps = variant
    portal = main.modules("portal").template
    site = one(portal, "Microsoft.Web/staticSites")
    origin = f"https://{site.name}.azurestaticapps.net"
    outputs = main.outputs()
    assert outputs["PORTAL_URL"] == f"{origin}/"
    assert outputs["SERVICE_PORTAL_RESOURCE_NAME"] == site.name
    assert outputs["PORTAL_HOME_API_BASE_URL"] == f"https://{one(stamps[0], 'Microsoft.Web/sites').name}.azurewebsites.net"
    listed = json.loads(outputs["CONNECTOR_PORTAL_STAMPS"])
    for stamp, entry in zip(stamps, listed):
        app = one(stamp, "Microsoft.Web/sites")
        cors = app.body()["properties"]["siteConfig"]["cors"]["allowedOrigins"]
        assert origin in cors
        assert entry["api_base_url"] == f"https://{app.name}.azurewebsites.net"
        assert app_settings(stamp)["CONNECTOR_PORTAL_STAMPS"] == outputs["CONNECTOR_PORTAL_STAMPS"]


def test_scale_and_resilience_settings_follow_the_parameters(variant):
    name, _, stamps = variant
    always_ready = VARIANTS[name].get("alwaysReadyInstances", 0)
    for stamp, entry in zip(stamps, file_parameters()["stamps"]):
        assert one(stamp, "Microsoft.Storage/storageAccounts").body()["sku"]["name"] == entry.get("storageSku", "Standard_GZRS")
        assert one(stamp, "Microsoft.Web/serverfarms").body()["properties"]["zoneRedundant"] is entry.get("zoneRedundant", False)
        app = one(stamp, "Microsoft.Web/sites").body()["properties"]
        assert app["siteConfig"]["healthCheckPath"] == "/api/health"
        ready = app["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"]
        assert ready == ([{"name": "http", "instanceCount": always_ready}] if always_ready else [])


def test_the_operators_own_settings_reach_only_their_stamp_and_never_replace_the_stamps():
    secret_ref = "@Microsoft.KeyVault(VaultName=operator-vault;SecretName=cerner-app-secret)"
    stamps = every_stamp()
    stamps[1]["appSettings"] = {"CONNECTOR_CLIENT_SECRET_0A1B_PROVIDER": secret_ref,
                                "CONNECTOR_GRAPH_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
                                "CONNECTOR_SESSION_KEY": "an attempt to replace the stamp's own"}
    rendered = [app_settings(s) for s in stamps_of(render(stamps=stamps))]
    assert rendered[1]["CONNECTOR_CLIENT_SECRET_0A1B_PROVIDER"] == secret_ref
    assert rendered[1]["CONNECTOR_GRAPH_CLIENT_ID"] == "11111111-2222-3333-4444-555555555555"
    for settings in rendered:
        assert text(settings["CONNECTOR_SESSION_KEY"]).startswith("@Microsoft.KeyVault(")
    for other in (rendered[0], rendered[2]):
        assert "CONNECTOR_CLIENT_SECRET_0A1B_PROVIDER" not in other and "CONNECTOR_GRAPH_CLIENT_ID" not in other


def test_the_health_check_path_is_a_route_of_the_app():
    source = (ROOT / "connector" / "functions" / "health.py").read_text()
    assert re.search(r'route="health"', source) and "routePrefix\": \"api\"" in (ROOT / "host.json").read_text()


def string_literals(source: str) -> list[str]:
    """Bicep's single-quoted strings without interpolation (comments skipped, escapes honoured)."""
    found, i = [], 0

    def string(i: int) -> tuple[int, str, bool]:  # i at the opening quote
        i += 1
        value, interpolated = [], False
        while source[i] != "'":
            if source[i] == "\\":
                value.append(source[i:i + 2])
                i += 2
            elif source.startswith("${", i):
                interpolated, i = True, expression_end(i + 2)
            else:
                value.append(source[i])
                i += 1
        return i + 1, "".join(value), interpolated

    def expression_end(i: int) -> int:  # i just past "${"; returns the index past the matching "}"
        depth = 1
        while depth:
            if source[i] == "'":
                i, literal, interpolated = string(i)
                if not interpolated:
                    found.append(literal)
                continue
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            i += 1
        return i

    while i < len(source):
        if source.startswith("//", i):
            i = source.find("\n", i) if "\n" in source[i:] else len(source)
        elif source.startswith("/*", i):
            i = source.index("*/", i) + 2
        elif source[i] == "'":
            i, literal, interpolated = string(i)
            if not interpolated:
                found.append(literal)
        else:
            i += 1
    return found


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: p.name)
def test_no_string_literal_reads_like_a_symbol(path: Path):
    """pycep hands 'name' and name alike to the renderer (and to test_infra.py): in these files a
    string literal must never spell a parameter, variable, resource, module or loop variable."""
    parsed = tree(path)
    symbols = {name for key in ("parameters", "variables", "resources", "modules") for name in parsed.get(key) or {}}
    for match in re.finditer(r"\[for\s*\(?\s*(\w+)(?:\s*,\s*(\w+))?", path.read_text()):
        symbols |= {m for m in match.groups() if m}
    literals = string_literals(path.read_text())
    assert literals, "the scanner found no string at all"
    clashes = sorted(set(literals) & symbols)
    assert not clashes, f"{path.name}: literals that spell symbols: {clashes}"


def test_audit_logs_go_to_the_stamps_workspace():
    (stamp, *_) = stamps_of(render())
    scopes = {}
    for setting in stamp.of_type("Microsoft.Insights/diagnosticSettings"):
        body = setting.body()
        assert body["properties"]["workspaceId"] == Ref("logAnalytics.id")
        scopes[setting._body["scope"]] = [log.get("categoryGroup") or log["category"] for log in body["properties"]["logs"]]
    assert scopes == {"keyVault": ["audit"], "tableService": ["StorageWrite", "StorageDelete"],
                      "acsEvents": ["DeliveryFailures"]}
