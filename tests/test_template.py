"""template.yaml: it lints clean, and it says what the service needs and grants no more."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from bedrock_relay import settings

from tests.harness import ROOT
from tests.samtools import TEMPLATE, load_template, run_tool, runtime_version, template_function


@pytest.fixture(scope="module")
def template() -> dict:
    """The template as data."""
    return load_template()


@pytest.fixture(scope="module")
def function() -> dict:
    return template_function()


def _statements(template: dict) -> Iterator[dict]:
    """Yield every IAM statement in the template, the per-model ones included."""
    resources = template["Resources"]
    role = resources["ChatFunctionRole"]["Properties"]
    for policy in role["Policies"]:
        yield from policy["PolicyDocument"]["Statement"]
    _, _, per_model = resources["Fn::ForEach::ModelAccess"]
    for resource in [*per_model.values(), resources["StoreAccess"], resources["GuardrailAccess"]]:
        yield from resource["Properties"]["PolicyDocument"]["Statement"]


def dynamodb_actions_in_code() -> set[str]:
    """The DynamoDB operations the service calls, read from its source, as IAM actions."""
    found = set()
    for path in (ROOT / "function" / "bedrock_relay").glob("*.py"):
        source = path.read_text()
        for operation in re.findall(r'call\(\s*"(\w+)"', source):
            # A transaction's puts and updates are authorized as PutItem and UpdateItem themselves.
            if operation != "transact_write_items":
                found.add("dynamodb:" + "".join(part.title() for part in operation.split("_")))
    return found


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_reports_nothing():
    done = run_tool("cfn-lint", str(TEMPLATE))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_sam_validate_with_lint_passes():
    done = run_tool("sam", "validate", "--lint", "--template-file", str(TEMPLATE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is a valid SAM Template" in done.stdout + done.stderr


def test_function_is_wired_for_streaming_through_the_web_adapter(template: dict, function: dict):
    variables = function["Environment"]["Variables"]
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert variables["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    # The app listens where LWA looks: AWS_LWA_PORT, read by the app itself, and on loopback.
    assert variables["AWS_LWA_PORT"] == "8080"
    assert "PORT" not in variables and "LISTEN_HOST" not in variables
    assert function["Handler"] == "run.sh"
    assert function["Timeout"] == 900
    url = template["Resources"]["ChatFunctionUrl"]["Properties"]
    assert url["InvokeMode"] == "RESPONSE_STREAM"
    # $LATEST, so every deploy reaches the URL; with SnapStart, the alias of published versions.
    assert url["TargetFunctionArn"] == {
        "Fn::If": ["UseSnapStart", {"Ref": "ChatFunction.Alias"}, {"Fn::GetAtt": ["ChatFunction", "Arn"]}]
    }
    assert function["SnapStart"] == {"ApplyOn": {"Fn::If": ["UseSnapStart", "PublishedVersions", "None"]}}
    assert template["Parameters"]["SnapStart"]["Default"] == "false"
    # JWT and API_KEY leave the URL open: the app checks those credentials itself.
    assert url["AuthType"] == {"Fn::If": ["IsIam", "AWS_IAM", "NONE"]}


def test_default_auth_is_iam_and_cors_exposes_the_request_id(template: dict, function: dict):
    assert template["Parameters"]["AuthType"]["Default"] == "AWS_IAM"
    _, cors, _ = template["Resources"]["ChatFunctionUrl"]["Properties"]["Cors"]["Fn::If"]
    assert "x-request-id" in cors["ExposeHeaders"]
    signed_json = {"authorization", "content-type", "x-amz-date", "x-amz-security-token"}
    assert signed_json <= set(cors["AllowHeaders"])


def test_every_service_setting_in_the_template_is_one_the_service_reads(function: dict):
    known = settings.env_names()
    ours = {name for name in function["Environment"]["Variables"] if not name.startswith("AWS_")}
    assert ours <= known
    assert {"MODEL_ID", "ALLOWED_MODEL_IDS", "MAX_TOKENS_LIMIT", "HEARTBEAT_SECONDS"} <= ours


def test_lambda_web_adapter_layer_matches_the_architecture(function: dict):
    lwa_arn, dependencies = function["Layers"]
    arn_pattern, names = lwa_arn["Fn::Sub"]
    assert arn_pattern.endswith(":753240598075:layer:${Name}:${LwaLayerVersion}")
    assert names["Name"] == {"Fn::If": ["IsArm64", "LambdaAdapterLayerArm64", "LambdaAdapterLayerX86"]}
    assert dependencies == {"Fn::If": ["IsArm64", {"Ref": "DependenciesArm64"}, {"Ref": "DependenciesX86"}]}


def test_permissions_are_only_what_the_function_uses(template: dict):
    actions: set[str] = set()
    for statement in _statements(template):
        assert statement["Effect"] == "Allow"
        resources = _as_list(statement["Resource"])
        assert "*" not in resources
        arns = [resource.get("Fn::Sub", "") for resource in resources if isinstance(resource, dict)]
        # A wildcard over every model is allowed only through the stack's own profiles.
        if any(arn.endswith("foundation-model/*") for arn in arns):
            assert "bedrock:InferenceProfileArn" in statement["Condition"]["StringEquals"]
        actions.update(_as_list(statement["Action"]))
    assert actions == {
        "bedrock:InvokeModelWithResponseStream",
        "bedrock:ApplyGuardrail",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        *dynamodb_actions_in_code(),
    }


def test_the_store_table_is_on_demand_expiring_encrypted_and_the_functions_alone(
    template: dict, function: dict
):
    resources = template["Resources"]
    table = resources["StreamsTable"]
    assert table["Condition"] == "HasStore"
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] == {
        "Fn::If": ["HasPointInTimeRecovery", True, False]
    }
    assert template["Parameters"]["EnableStore"]["Default"] == "true"
    env = function["Environment"]["Variables"]
    assert env["STREAMS_TABLE"] == {"Fn::If": ["HasStore", {"Ref": "StreamsTable"}, ""]}
    (statement,) = resources["StoreAccess"]["Properties"]["PolicyDocument"]["Statement"]
    assert set(statement["Action"]) == dynamodb_actions_in_code()
    assert statement["Resource"][0] == {"Fn::GetAtt": ["StreamsTable", "Arn"]}
    assert "ConversationsByOwner" in statement["Resource"][1]["Fn::Sub"]
    # The code queries the index the template declares.
    (index,) = properties["GlobalSecondaryIndexes"]
    source = (ROOT / "function" / "bedrock_relay" / "conversations.py").read_text()
    assert f'"IndexName": "{index["IndexName"]}"' in source


def test_bedrock_access_names_both_kinds_of_model_arn(template: dict):
    _, collection, per_model = template["Resources"]["Fn::ForEach::ModelAccess"]
    assert collection == {"Ref": "AllowedModelIds"}
    (direct, via_profile) = next(iter(per_model.values()))["Properties"]["PolicyDocument"]["Statement"]
    arns = [item["Fn::Sub"] for item in direct["Resource"]]
    assert any(arn.endswith(":foundation-model/${Id}") for arn in arns)
    assert any(arn.endswith(":inference-profile/${Id}") for arn in arns)
    condition = via_profile["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"]["Fn::Sub"]
    assert condition.endswith(":${AWS::AccountId}:inference-profile/${Id}")


def test_outputs_each_have_a_description(template: dict):
    outputs = template["Outputs"]
    assert set(outputs) >= {"FunctionUrl", "FunctionArn", "SignedCurlCommand"}
    assert all(output.get("Description") for output in outputs.values())
    assert '--aws-sigv4 "aws:amz:${AWS::Region}:lambda"' in outputs["SignedCurlCommand"]["Value"]["Fn::Sub"]


def test_runtime_layers_and_layer_makefile_agree_on_the_python_version(template: dict, function: dict):
    version = runtime_version()
    assert function["Runtime"] == f"python{version}"
    for name in ("DependenciesArm64", "DependenciesX86"):
        assert template["Resources"][name]["Properties"]["CompatibleRuntimes"] == [f"python{version}"]
    makefile = (ROOT / "layer" / "Makefile").read_text()
    assert re.search(rf"^PYTHON_VERSION := {re.escape(version)}$", makefile, re.MULTILINE)


def test_each_auth_type_sets_the_apps_mode(template: dict, function: dict):
    assert template["Parameters"]["AuthType"]["AllowedValues"] == ["AWS_IAM", "JWT", "API_KEY", "NONE"]
    assert template["Parameters"]["ApiKeyHashes"]["NoEcho"] is True
    variables = function["Environment"]["Variables"]
    assert variables["AUTH_MODE"] == {
        "Fn::If": [
            "IsJwt",
            {"Fn::If": ["HasApiKeys", "jwt,api_key", "jwt"]},
            {"Fn::If": ["IsApiKey", "api_key", "none"]},
        ]
    }
    created, given = variables["JWT_ISSUER"]["Fn::If"][1:]
    assert created == {"Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com/${UserPool}"}
    assert given == {"Ref": "JwtIssuer"}
    assert variables["JWT_AUDIENCE"]["Fn::If"][:2] == ["CreateUserPool", {"Ref": "UserPoolClient"}]
    conditions = template["Conditions"]
    assert conditions["CreateUserPool"] == {
        "Fn::And": [{"Condition": "IsJwt"}, {"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}]
    }
    resources = template["Resources"]
    for name in ("ChatFunctionPublicUrlPermission", "ChatFunctionPublicInvokePermission"):
        assert resources[name]["Condition"] == "IsUrlOpen"


def test_the_created_user_pool_is_closed_and_its_client_is_a_pkce_page(template: dict):
    resources = template["Resources"]
    pool = resources["UserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert resources["UserPoolClient"]["Properties"]["GenerateSecret"] is False
    # The client's sign-in settings live with the Function URL they need, in the custom resource,
    # which runs again whenever they change or the client is updated (its Name is an input).
    callbacks = resources["CognitoCallbacks"]["Properties"]
    settings = callbacks["Settings"]
    assert settings["AllowedOAuthFlows"] == ["code"] and "openid" in settings["AllowedOAuthScopes"]
    assert settings["AllowedOAuthFlowsUserPoolClient"] is True
    assert callbacks["Url"] in (
        {"Fn::GetAtt": ["ChatFunctionUrl", "FunctionUrl"]},
        {"Fn::GetAtt": "ChatFunctionUrl.FunctionUrl"},
    )
    assert callbacks["ClientName"] in (
        {"Fn::GetAtt": ["UserPoolClient", "Name"]},
        {"Fn::GetAtt": "UserPoolClient.Name"},
    )
    assert callbacks["ClientId"] == {"Ref": "UserPoolClient"}
    (statement,) = resources["CognitoCallbacksFunction"]["Properties"]["Policies"][0]["Statement"]
    assert statement["Action"] == ["cognito-idp:DescribeUserPoolClient", "cognito-idp:UpdateUserPoolClient"]
    assert statement["Resource"] == {"Fn::GetAtt": ["UserPool", "Arn"]}
    for name in (
        "UserPool",
        "UserPoolDomain",
        "UserPoolClient",
        "CognitoCallbacksFunction",
        "CognitoCallbacks",
    ):
        assert resources[name]["Condition"] == "CreateUserPool"
    outputs = template["Outputs"]
    assert "admin-create-user" in outputs["AddUserCommand"]["Value"]["Fn::Sub"]


def test_a_guardrail_is_applied_only_when_named_and_only_that_one(template: dict, function: dict):
    policy = template["Resources"]["GuardrailAccess"]
    assert policy["Condition"] == "HasGuardrail"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "bedrock:ApplyGuardrail"
    assert statement["Resource"]["Fn::Sub"].endswith(":guardrail/${GuardrailId}")
    env = function["Environment"]["Variables"]
    assert env["GUARDRAIL_ID"] == {"Ref": "GuardrailId"}
    assert template["Parameters"]["GuardrailStreamMode"]["AllowedValues"] == ["sync", "async"]


def _metric_names(value: Any) -> Iterator[str]:
    """Yield every metric name a template value names: in alarms, and in the dashboard's JSON."""
    if isinstance(value, dict):
        if "MetricName" in value:
            yield value["MetricName"]
        for item in value.values():
            yield from _metric_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _metric_names(item)


def test_alarms_and_the_dashboard_watch_metrics_the_code_declares(template: dict, function: dict):
    import json

    from bedrock_relay.metrics import COUNTS, MEASURES

    declared = {*COUNTS, *(name for name, _ in MEASURES)}
    resources = template["Resources"]
    alarms = {
        name: r
        for name, r in resources.items()
        if isinstance(r, dict) and r.get("Type") == "AWS::CloudWatch::Alarm"
    }
    assert set(alarms) == {"ErrorRateAlarm", "BedrockThrottleAlarm", "TtftAlarm", "ConcurrencyAlarm"}
    ours = set(_metric_names(alarms)) - {"ConcurrentExecutions"}
    assert ours and ours <= declared
    body, values = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    namespace = "BedrockRelay/${AWS::StackName}"
    assert values["Namespace"] == {"Fn::Sub": namespace}
    assert function["Environment"]["Variables"]["METRICS_NAMESPACE"] == {"Fn::Sub": namespace}
    # The body is JSON once its ${...} are filled in: numbers for the numeric ones.
    filled = re.sub(r"\$\{(TtftAlarmMilliseconds|ReservedConcurrency)\}", "1", body)
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", filled))["widgets"]
    on_dashboard = {row[1] for w in widgets if w["type"] == "metric" for row in w["properties"]["metrics"]}
    assert declared <= on_dashboard | {"durationMs"}  # every metric but duration is graphed
    assert {"ConcurrentExecutions", "Throttles"} <= on_dashboard
    # Every alarm notifies the topic when an address is given, and only then.
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == {
            "Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]
        }
    topic = resources["AlarmTopic"]
    assert topic["Condition"] == "HasAlarmEmail" and topic["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    assert alarms["ConcurrencyAlarm"]["Condition"] == "HasReservedConcurrency"
