"""infra/: the Bicep of one stamp per geography, and azure.yaml.

No Bicep CLI runs here (its installer downloads from GitHub), so every .bicep file is parsed with
pycep-parser and the parsed tree is checked for what the connector relies on in Azure: every
setting without a safe default is wired, nothing secret is, storage and Key Vault take Entra ID
only, and the managed identity holds the data-plane roles the app and the Functions host use.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from pycep import BicepParser
from pydantic_core import PydanticUndefined

from connector.adapters.storage.repositories import StampTables
from connector.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
STAMP = INFRA / "stamp.bicep"
PARAMETERS = INFRA / "main.parameters.json"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Settings whose default is right in Azure too: leaving them out of the app settings is safe.
# Adding a setting to connector/settings.py without either wiring it in stamp.bicep or listing it
# here (with the reason) fails test_app_settings_wire_every_setting_needed_in_azure.
SAFE_DEFAULTS = {
    "version": "comes from the deployed package",
    "storage_table_endpoint": "None means https://<account>.table.core.windows.net",
    "storage_queue_endpoint": "None means https://<account>.queue.core.windows.net",
    "storage_name_prefix": "a stamp owns its storage account: no prefix",
    "storage_timeout_seconds": "tuned for triggers, not per deployment",
    "admin_clock_skew_seconds": "tuned for token validation, not per deployment",
    "outbound_ca_file": "only for the local stack's own CA",
    "graph_base_url": "Microsoft Graph's public v1.0 endpoint",
    "graph_authority_host": "Entra ID's public authority",
    "graph_client_id": "empty: the managed identity holds the Graph application permissions",
    "graph_client_secret": "none with the managed identity; a multi-tenant app registration sets it as a Key Vault reference",
    "sms_rate_per_minute": "ACS's documented toll-free limit",
    "retention_days": "30 days after the appointment suits every stamp; an operator's longer policy goes in extraAppSettings",
    "telemetry": "auto: on wherever APPLICATIONINSIGHTS_CONNECTION_STRING is set outside local mode, as stamp.bicep sets it",
}
# Accepted only for emulators on loopback: must never reach Azure.
EMULATOR_ONLY = {"storage_emulator_key", "acs_emulator_key"}

ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
ROLE_STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
ROLE_STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
ROLE_KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
ROLE_MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"

# Identity-based host storage connection: https://learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity
IDENTITY_HOST_STORAGE = {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential", "AzureWebJobsStorage__clientId"}
# A secret the deployment writes (SecretName=${symbol.name}) or one the operator puts in the vault
# under a fixed name (OPERATOR_SECRETS); either way a pointer into the stamp's own vault.
KEY_VAULT_REFERENCE = re.compile(
    r"@Microsoft\.KeyVault\(VaultName=\$\{keyVault\.name\};SecretName=(\$\{[A-Za-z]+\.name\}|[a-z]+(-[a-z]+)*)\)")
SECRET_SHAPED = re.compile(r"key|secret|password|passwd|connection|connstr|sas|token|credential", re.IGNORECASE)


@cache
def parsed(path: Path) -> dict:
    return BicepParser().parse(file_path=path)


def resources_of_type(tree: dict, resource_type: str) -> dict[str, dict]:
    return {name: res for name, res in tree["resources"].items() if res["type"].lower() == resource_type.lower()}


def one_resource(tree: dict, resource_type: str) -> tuple[str, dict]:
    found = resources_of_type(tree, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def config(resource: dict) -> dict:
    """A resource's body; for a loop, the body of one iteration; for an `if`, the body it guards."""
    body = resource["config"]
    return body["config"] if "loop_type" in body or "condition" in body else body


def property_path(node) -> list[str]:
    """`a.b.c` as ["a", "b", "c"] (pycep nests property accessors to the right)."""
    if isinstance(node, str):
        return [node]
    accessor = node.get("operator", {}) if isinstance(node, dict) else {}
    assert accessor.get("type") == "property_accessor", f"not a property access: {node}"
    return property_path(accessor["operands"]["operand_1"]) + property_path(accessor["operands"]["operand_2"])


def resolve(tree: dict, value):
    """A variable's literal value when `value` names a variable; otherwise `value` itself."""
    if isinstance(value, str) and value in tree["variables"]:
        return tree["variables"][value]["value"]
    return value


def stamp_app_settings() -> dict:
    tree = parsed(STAMP)
    configs = [config(r) for r in resources_of_type(tree, "Microsoft.Web/sites/config").values()]
    settings = [c for c in configs if c["name"] == "appsettings"]
    assert len(settings) == 1, "stamp.bicep sets the app settings in one sites/config 'appsettings' resource"
    merged = settings[0]["properties"]["function"]
    # union(extraAppSettings, {...}): the operator's settings first, so the stamp's own win over them.
    assert merged["type"] == "union" and merged["parameters"]["arg_1"] == "extraAppSettings"
    return merged["parameters"]["arg_2"]


def azure_required_settings() -> set[str]:
    return {f"CONNECTOR_{name.upper()}" for name in Settings.model_fields} - {
        f"CONNECTOR_{name.upper()}" for name in (*SAFE_DEFAULTS, *EMULATOR_ONLY)
    }


# --- parsing --------------------------------------------------------------------------------


def test_infra_has_main_and_stamp():
    assert {MAIN, STAMP} <= set(BICEP_FILES)
    assert PARAMETERS.is_file()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path):
    try:
        tree = BicepParser().parse(file_path=path)
    except Exception as exc:  # lark's UnexpectedInput and friends carry line and column
        pytest.fail(f"{path.relative_to(ROOT)} does not parse: {exc}")
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


def test_module_calls_match_the_module_parameters():
    """What `bicep build` would check: a module gets every parameter it requires and no unknown one."""
    for path in BICEP_FILES:
        for name, module in parsed(path).get("modules", {}).items():
            assert module["type"] == "local", f"{path.name}:{name} uses a registry module"
            target = (path.parent / module["detail"]["path"]).resolve()
            assert target.is_file(), f"{path.name}:{name} points at a missing {target}"
            declared = parsed(target)["parameters"]
            passed = set(config(module)["params"])
            required = {p for p, spec in declared.items() if spec["default"] is None}
            assert required <= passed, f"{path.name}:{name} misses {sorted(required - passed)}"
            assert passed <= set(declared), f"{path.name}:{name} passes unknown {sorted(passed - set(declared))}"


# --- one stamp per geography, from one parameter file ---------------------------------------


def test_main_deploys_a_resource_group_and_a_stamp_per_entry():
    tree = parsed(MAIN)
    assert tree["globals"]["scope"]["value"] == "subscription"
    groups = {name: res for name, res in resources_of_type(tree, "Microsoft.Resources/resourceGroups").items()
              if "loop_type" in res["config"]}
    assert len(groups) == 1, "one resource group per stamp, from one loop"
    group_name, groups = next(iter(groups.items()))
    assert groups["config"]["loop_type"]["detail"]["array_name"] == "stamps"
    stamps = [m for m in tree["modules"].values() if m["detail"]["path"] == "stamp.bicep"]
    assert len(stamps) == 1
    loop = stamps[0]["config"]["loop_type"]
    assert loop["type"] == "array_index" and loop["detail"]["array_name"] == "stamps"
    scope = config(stamps[0])["scope"]["operator"]
    assert scope["type"] == "index_accessor"
    assert scope["operands"] == {"operand_1": group_name, "operand_2": loop["detail"]["index_name"]}


def azd_generated(spec: dict) -> bool:
    """A parameter azd fills itself (@metadata({azd: {type: 'generate'}})): it never prompts for it."""
    return any(d["type"] == "metadata" and "generate" in json.dumps(d) for d in spec["decorators"])


def test_parameter_file_defines_us_eu_apac_in_distinct_locations():
    values = {k: v["value"] for k, v in json.loads(PARAMETERS.read_text())["parameters"].items()}
    stamps = values["stamps"]
    regions = [s["region"] for s in stamps]
    locations = [s["location"] for s in stamps]
    assert {"us", "eu", "apac"} <= set(regions)
    assert len(set(regions)) == len(regions), "a region is deployed once"
    assert len(set(locations)) == len(locations), f"each stamp in its own Azure region: {locations}"
    region_pattern = Settings.model_fields["stamp_region"].metadata[0].pattern
    acs_allowed = next(d["argument"] for d in parsed(STAMP)["parameters"]["acsDataLocation"]["decorators"]
                       if d["type"] == "allowed")
    expected_acs = {"us": "United States", "eu": "Europe", "apac": "Asia Pacific"}
    for s in stamps:
        assert re.fullmatch(region_pattern, s["region"]), s
        assert re.fullmatch(r"[a-z]+[a-z0-9]*", s["location"]), f"an Azure location name: {s}"
        assert s["label"].strip(), s
        assert s["acsDataLocation"] in acs_allowed, s
        if s["region"] in expected_acs:
            assert s["acsDataLocation"] == expected_acs[s["region"]], s
    main_params = parsed(MAIN)["parameters"]
    assert set(values) <= set(main_params), f"unknown parameters: {sorted(set(values) - set(main_params))}"
    # The rest of what main.bicep requires is asked at deploy time (azd prompts; az takes --parameters).
    asked = {p for p, spec in main_params.items() if spec["default"] is None and not azd_generated(spec)} - set(values)
    assert asked == {"adminApiClientId", "portalClientId"}
    # azd makes these keys once and keeps them in the environment; the Azure CLI is told them.
    assert {p for p, spec in main_params.items() if azd_generated(spec)} == {"acsEventsKey", "optoutKey"}
    # azd substitutes ${NAME=default} from its environment; nothing else may hide in the file.
    for name, value in values.items():
        if isinstance(value, str) and "${" in value:
            assert re.fullmatch(r"\$\{[A-Z_]+=(true|false)\}", value), (name, value)
            assert main_params[name]["type"] == "bool", name


def test_stamp_outputs_its_api_base_url_and_main_collects_them():
    url = parsed(STAMP)["outputs"]["apiBaseUrl"]["value"]
    # The portal's api_base_url is the stamp's origin; the portal appends /api/admin/...
    assert url == "https://${functionApp.properties.defaultHostName}"
    assert parsed(STAMP)["outputs"]["apiBaseUrl"]["type"] == "string"
    collected = parsed(MAIN)["outputs"]["STAMPS"]["value"]["config"]["apiBaseUrl"]
    assert property_path(collected["operator"]["operands"]["operand_2"]) == ["outputs", "apiBaseUrl"]


def test_every_resource_is_tagged_with_the_stamp_region():
    tree = parsed(STAMP)
    stamp_tags = tree["variables"]["stampTags"]["value"]["function"]
    assert stamp_tags["type"] == "union"
    assert stamp_tags["parameters"]["arg_2"] == {"'connector-stamp-region'": "region"}
    for name, resource in tree["resources"].items():
        body = config(resource)
        if "location" not in body:
            continue  # child resources and role assignments take no tags of their own
        tags = body.get("tags")
        assert tags == "stampTags" or tags.get("function", {}).get("parameters", {}).get("arg_1") == "stampTags", name


# --- app settings ---------------------------------------------------------------------------


def test_safe_default_list_is_honest():
    fields = Settings.model_fields
    assert set(SAFE_DEFAULTS) <= set(fields) and EMULATOR_ONLY <= set(fields)
    for name in SAFE_DEFAULTS:
        default = fields[name].default
        assert default is not PydanticUndefined, f"{name} has no default, so it is never safe to omit"
        assert not (isinstance(default, str) and "127.0.0.1" in default), f"{name}'s default is loopback"


def test_app_settings_wire_every_setting_needed_in_azure():
    app_settings = set(stamp_app_settings())
    missing = azure_required_settings() - app_settings
    assert not missing, f"stamp.bicep app settings miss {sorted(missing)} (or list them in SAFE_DEFAULTS)"
    # Spot checks on the list itself: the fields without defaults and the loopback defaults.
    assert {"CONNECTOR_STAMP_REGION", "CONNECTOR_STORAGE_ACCOUNT_NAME", "CONNECTOR_PUBLIC_BASE_URL",
            "CONNECTOR_PROVISIONING_QUEUE", "CONNECTOR_ACS_ENDPOINT"} <= azure_required_settings()


def test_app_settings_name_only_real_settings():
    unknown = {k for k in stamp_app_settings() if k.startswith("CONNECTOR_")} - {
        f"CONNECTOR_{name.upper()}" for name in Settings.model_fields
    }
    assert not unknown, f"not in connector/settings.py (typo?): {sorted(unknown)}"


def test_app_settings_values_fit_azure():
    values = stamp_app_settings()
    for name in EMULATOR_ONLY | {"outbound_ca_file", "storage_table_endpoint", "storage_queue_endpoint"}:
        assert f"CONNECTOR_{name.upper()}" not in values
    # pycep renders the literal 'false' and an identifier alike: read the source line too.
    assert values["CONNECTOR_LOCAL_MODE"] == "false"
    assert re.search(r"^\s*CONNECTOR_LOCAL_MODE:\s*'false'\s*$", STAMP.read_text(), re.MULTILINE)
    assert values["CONNECTOR_PUBLIC_BASE_URL"] == "https://${functionApp.properties.defaultHostName}"
    assert values["CONNECTOR_ACS_ENDPOINT"] == "https://${communication.properties.hostName}"
    assert property_path(values["CONNECTOR_STORAGE_ACCOUNT_NAME"]) == ["storage", "name"]
    assert values["CONNECTOR_STAMP_REGION"] == "region"
    assert values["CONNECTOR_PORTAL_STAMPS"] == "portalStampsJson"
    assert property_path(values["CONNECTOR_PROVISIONING_QUEUE"]) == ["provisioningQueue", "name"]


def test_trigger_binding_expressions_resolve_from_app_settings():
    """The host resolves %SETTING% in bindings from app settings, not from pydantic defaults."""
    source = "\n".join(p.read_text() for p in (ROOT / "connector" / "functions").rglob("*.py"))
    referenced = set(re.findall(r"%([A-Za-z0-9_]+)%", source))
    assert "CONNECTOR_PROVISIONING_QUEUE" in referenced
    assert referenced <= set(stamp_app_settings()), sorted(referenced - set(stamp_app_settings()))
    connections = set(re.findall(r"connection\s*=\s*\"([^\"]+)\"", source))
    for connection in connections:  # identity-based: <connection>__accountName, never a string
        assert f"{connection}__accountName" in stamp_app_settings(), connection
        assert connection not in stamp_app_settings(), connection


def test_secure_parameters_default_to_fresh_randomness_only():
    """What .checkov.yaml's CKV_AZURE_131 skip relies on: a @secure() default is newGuid() calls, never a literal."""
    for path in BICEP_FILES:
        text = path.read_text()
        for name, spec in parsed(path)["parameters"].items():
            if not any(d["type"] == "secure" for d in spec["decorators"]) or spec["default"] is None:
                continue
            declaration = re.search(rf"^param {name} string = (.+)$", text, re.MULTILINE)
            assert declaration, f"{path.name}: {name}"
            assert re.fullmatch(r"'(\$\{newGuid\(\)\})+'|newGuid\(\)", declaration.group(1).strip()), \
                f"{path.name}: secure parameter {name} defaults to {declaration.group(1)}"


def test_no_app_setting_or_output_carries_a_secret():
    tree = parsed(STAMP)
    for name in stamp_app_settings():
        if name in IDENTITY_HOST_STORAGE or name == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            continue
        if KEY_VAULT_REFERENCE.fullmatch(str(stamp_app_settings()[name])):
            continue  # the value is a pointer the platform resolves with the identity, not a secret
        assert not SECRET_SHAPED.search(name), f"secret-shaped app setting {name}"
    assert "AzureWebJobsStorage" not in stamp_app_settings(), "the host storage goes by identity"
    # The one connection string allowed names an ingestion endpoint that accepts Entra tokens only.
    values = stamp_app_settings()
    _, insights = one_resource(tree, "Microsoft.Insights/components")
    assert config(insights)["properties"]["DisableLocalAuth"] is True
    assert property_path(values["APPLICATIONINSIGHTS_CONNECTION_STRING"])[-2:] == ["properties", "ConnectionString"]
    assert "Authorization=AAD" in values["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    for path in BICEP_FILES:
        text = path.read_text()
        for forbidden in ("listKeys", "listAccountSas", "listServiceSas", "listConnectionStrings", "AccountKey",
                          "SharedAccessSignature", "EMULATOR_KEY"):
            assert forbidden not in text, f"{path.name} mentions {forbidden}"
        for output in parsed(path)["outputs"]:
            assert not re.search(r"key(?!vault)|secret|password|connection", output, re.IGNORECASE), output


# --- storage, identity, roles ---------------------------------------------------------------


def test_storage_takes_entra_id_only_over_tls12():
    _, storage = one_resource(parsed(STAMP), "Microsoft.Storage/storageAccounts")
    props = config(storage)["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True


def test_stamp_creates_the_connector_tables_and_queues():
    tree = parsed(STAMP)
    names = []

    class RecordingService:
        def get_table_client(self, name):
            names.append(name)
            return type("Client", (), {"table_name": name})()

    StampTables(RecordingService(), Settings(stamp_region="us", storage_account_name="stamp"))
    assert sorted(tree["variables"]["tableNames"]["value"]) == sorted(names)
    _, tables = one_resource(tree, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert tables["config"]["loop_type"]["detail"]["array_name"] == "tableNames"
    assert tree["parameters"]["provisioningQueueName"]["default"] == Settings.model_fields["provisioning_queue"].default
    queues = {config(q)["name"] for q in resources_of_type(tree, "Microsoft.Storage/storageAccounts/queueServices/queues").values()}
    assert queues == {"provisioningQueueName", Settings.model_fields["scan_queue"].default,
                      Settings.model_fields["send_queue"].default}


def role_assignments(tree: dict) -> list[dict]:
    found = []
    for name, resource in resources_of_type(tree, "Microsoft.Authorization/roleAssignments").items():
        body = config(resource)
        role = body["properties"]["roleDefinitionId"]["function"]
        assert role["type"] == "subscription_resource_id", name
        assert role["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions", name
        found.append({
            "name": name,
            "scope": body["scope"],
            "role": resolve(tree, role["parameters"]["resource_name_1"]),
            "principal": property_path(body["properties"]["principalId"]),
            "principal_type": body["properties"]["principalType"],
        })
    return found


def test_identity_holds_the_data_roles_on_its_own_resources():
    tree = parsed(STAMP)
    identity, _ = one_resource(tree, "Microsoft.ManagedIdentity/userAssignedIdentities")
    storage, _ = one_resource(tree, "Microsoft.Storage/storageAccounts")
    vault, _ = one_resource(tree, "Microsoft.KeyVault/vaults")
    insights, _ = one_resource(tree, "Microsoft.Insights/components")
    communication, _ = one_resource(tree, "Microsoft.Communication/communicationServices")
    granted = {(a["scope"], a["role"]) for a in role_assignments(tree)}
    for role in (ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR, ROLE_STORAGE_QUEUE_DATA_CONTRIBUTOR, ROLE_STORAGE_BLOB_DATA_OWNER):
        assert (storage, role) in granted, f"storage role {role} missing"
    assert (vault, ROLE_KEY_VAULT_CRYPTO_USER) in granted
    assert (insights, ROLE_MONITORING_METRICS_PUBLISHER) in granted
    assert any(scope == communication for scope, _ in granted), "the identity needs a role on ACS"
    for assignment in role_assignments(tree):
        assert assignment["principal"] == [identity, "properties", "principalId"], assignment
        assert assignment["principal_type"] == "ServicePrincipal", assignment
        assert re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", assignment["role"]), assignment


def test_function_app_runs_as_that_identity():
    tree = parsed(STAMP)
    identity, _ = one_resource(tree, "Microsoft.ManagedIdentity/userAssignedIdentities")
    _, app = one_resource(tree, "Microsoft.Web/sites")
    body = config(app)
    assert body["identity"]["type"] == "UserAssigned"
    assert list(body["identity"]["userAssignedIdentities"]) == ["'${" + identity + ".id}'"]
    values = stamp_app_settings()
    assert values["AzureWebJobsStorage__credential"] == "managedidentity"
    assert property_path(values["AzureWebJobsStorage__accountName"]) == ["storage", "name"]
    assert property_path(values["AzureWebJobsStorage__clientId"]) == [identity, "properties", "clientId"]
    assert property_path(values["AZURE_CLIENT_ID"]) == [identity, "properties", "clientId"]
    deployment = body["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert deployment["type"] == "UserAssignedIdentity"


def test_function_app_is_hardened_linux_python_311():
    tree = parsed(STAMP)
    _, app = one_resource(tree, "Microsoft.Web/sites")
    _, plan = one_resource(tree, "Microsoft.Web/serverfarms")
    body = config(app)
    assert "linux" in body["kind"] and config(plan)["properties"]["reserved"] is True
    assert config(plan)["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    props = body["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["functionAppConfig"]["runtime"] == {"name": "python", "version": "3.11"}
    policies = {config(p)["name"]: config(p)["properties"]["allow"]
                for p in resources_of_type(tree, "Microsoft.Web/sites/basicPublishingCredentialsPolicies").values()}
    assert policies == {"ftp": False, "scm": False}


def test_key_vault_is_rbac_with_purge_protection():
    _, vault = one_resource(parsed(STAMP), "Microsoft.KeyVault/vaults")
    props = config(vault)["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enablePurgeProtection"] is True


def test_communication_services_keeps_data_in_the_geography():
    tree = parsed(STAMP)
    _, acs = one_resource(tree, "Microsoft.Communication/communicationServices")
    assert config(acs)["location"] == "global"
    assert config(acs)["properties"]["dataLocation"] == "acsDataLocation"
    assert tree["parameters"]["acsDataLocation"]["default"] is None, "each stamp states its geography"


# --- azd ------------------------------------------------------------------------------------


def test_azure_yaml_names_the_function_and_portal_services():
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert doc["infra"]["path"] == "infra" and doc["infra"].get("module", "main") == "main"
    assert list(doc["services"]) == ["api", "portal"]
    api = doc["services"]["api"]
    assert (api["host"], api["language"], api["project"]) == ("function", "python", ".")
    portal = doc["services"]["portal"]
    assert (portal["host"], portal["project"], portal["dist"]) == ("staticwebapp", "infra/portal-site", ".")
    # The folder azd packages exists in a clean clone (its own .gitignore keeps the built site out of git).
    assert (ROOT / portal["project"] / ".gitignore").is_file()
    # azd finds both targets by the names main.bicep outputs (several stamps share one azd environment).
    outputs = parsed(MAIN)["outputs"]
    for service in (api, portal):
        for key in ("resourceGroup", "resourceName"):
            variable = re.fullmatch(r"\$\{(\w+)\}", service[key]).group(1)
            assert variable in outputs, f"azure.yaml {key} uses {variable}, which main.bicep does not output"
    # The site is assembled after provisioning (it needs the stamps' URLs) and before packaging.
    hook = doc["hooks"]["predeploy"]
    assert {hook["posix"]["run"].split()[-1], hook["windows"]["run"].split()[-1]} == {"infra/portal_site.py"}
    assert [step["azd"].split()[0] for step in doc["workflows"]["up"]["steps"]] == ["provision", "deploy"]
    for name in ("PORTAL_HOME_API_BASE_URL", "CONNECTOR_PORTAL_STAMPS", "CONNECTOR_ADMIN_AUTHORITY_HOST"):
        assert name in outputs and name in (INFRA / "portal_site.py").read_text(), name
