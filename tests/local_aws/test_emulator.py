"""The local AWS emulator: Python Lambdas, state machines from CloudFormation, change sets, cross-stack
outputs, custom resources, control routes and process clean-up (offline; no CDK here)."""

from __future__ import annotations

import io
import json
import os
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambda_handlers.aws import panorama
from local_aws import moto_patches
from local_aws.emulator import Emulator
from local_aws.emulator_process import launch, read_state, terminate
from local_aws.lambda_runner import FunctionSpec, LambdaRunner
from local_aws.panorama_records import device_id_for_name

FUNCTIONS = '''
import json, os, time
import boto3

class Throttled(Exception):
    """Raised on purpose: a state machine retries it by this name."""

def echo(event, context):
    print("event", json.dumps(event))
    return {"echo": event, "function": context.function_name, "endpoint": os.environ["AWS_ENDPOINT_URL"],
            "region": os.environ["AWS_REGION"], "remaining_ms": context.get_remaining_time_in_millis(),
            "trace_disabled": os.environ.get("POWERTOOLS_TRACE_DISABLED")}

def throttled(event, context):
    raise Throttled("slow down")

def sleepy(event, context):
    time.sleep(float(event.get("seconds", 30)))
    return "woke up"

def write(event, context):
    boto3.client("s3").put_object(Bucket=event["bucket"], Key=event["key"], Body=b"written")
    return "ok"

def throttled_once(event, context):
    """Throttled on the first call (a marker object remembers it), then a data set."""
    s3, bucket = boto3.client("s3"), os.environ["BUCKET"]
    try:
        s3.head_object(Bucket=bucket, Key="marker")
    except Exception:
        s3.put_object(Bucket=bucket, Key="marker", Body=b"1")
        raise Throttled("first call")
    return {"kind": "dataset", "bucket": bucket}

def not_json(event, context):
    return object()

def record(event, context):
    """Keeps what it was invoked with (an EventBridge event) in the bucket of $BUCKET."""
    key = "seen/" + event["detail"]["object"]["key"]
    boto3.client("s3").put_object(Bucket=os.environ["BUCKET"], Key=key, Body=json.dumps(event).encode())
'''

CUSTOM_RESOURCE = '''
import json, urllib.request
import boto3

def handler(event, context):
    """Records each request in S3 (bucket from the properties), then answers CloudFormation."""
    props = event["ResourceProperties"]
    key = f"requests/{event['RequestType']}/{event['LogicalResourceId']}"
    boto3.client("s3").put_object(Bucket=props["Bucket"], Key=key, Body=json.dumps(event).encode())
    failed = props.get("Fail") == "yes"
    body = json.dumps({
        "Status": "FAILED" if failed else "SUCCESS",
        "Reason": "asked to fail" if failed else "",
        "PhysicalResourceId": f"thing-{props['Name']}",
        "StackId": event["StackId"], "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": {"Greeting": f"hello {props['Name']}"},
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    urllib.request.urlopen(request, timeout=10).close()
'''

ROLE_ARN = "arn:aws:iam::123456789012:role/test"


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(lambda_cache_dir=tmp_path_factory.mktemp("lambda-cache")) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(aws: Emulator) -> Callable[[str], Any]:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

    def make(service: str) -> Any:
        return session.client(service, endpoint_url=aws.endpoint)

    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    make("iam").create_role(RoleName="test", AssumeRolePolicyDocument=json.dumps(trust))
    return make


@pytest.fixture(scope="module")
def functions(client: Callable[[str], Any]) -> Callable[[str, int], str]:
    """Creates a function of FUNCTIONS (once per handler/timeout) and returns its name."""
    lambda_ = client("lambda")
    code = zipped({"app.py": FUNCTIONS})
    created: dict[tuple[str, int], str] = {}

    def create(handler: str, timeout: int = 10) -> str:
        if (handler, timeout) not in created:
            name = f"{handler.replace('_', '-')}-{timeout}"
            lambda_.create_function(
                FunctionName=name,
                Runtime="python3.14",
                Role=ROLE_ARN,
                Handler=f"app.{handler}",
                Code={"ZipFile": code},
                Timeout=timeout,
                Environment={"Variables": {"GREETING": "hi"}},
            )
            created[(handler, timeout)] = name
        return created[(handler, timeout)]

    return create


def invoke(client: Callable[[str], Any], name: str, event: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    response = client("lambda").invoke(FunctionName=name, Payload=json.dumps(event), **kwargs)
    return json.loads(response["Payload"].read() or b"null"), response


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


# --------------------------------------------------------------------------------------------------
# (a) Lambda: Python handlers in a subprocess
# --------------------------------------------------------------------------------------------------


def test_endpoint_is_localhost_on_a_free_port_bound_to_loopback(aws: Emulator) -> None:
    assert aws.endpoint == f"http://localhost:{aws.port}" and aws.port > 0
    assert aws.env()["AWS_ENDPOINT_URL"] == aws.endpoint
    assert aws._server.server_address[0] == "127.0.0.1"
    with urllib.request.urlopen(f"{aws.endpoint}/_panopipe/health", timeout=5) as response:
        assert json.load(response)["status"] == "ok"
    with pytest.raises(ValueError, match="loopback only"):
        Emulator(host="0.0.0.0")


def test_function_runs_its_handler_with_environment_and_endpoint(
    client: Callable[[str], Any], functions: Callable[..., str], aws: Emulator
) -> None:
    payload, response = invoke(client, functions("echo"), {"a": 1}, LogType="Tail")
    assert "FunctionError" not in response
    assert payload["echo"] == {"a": 1}
    assert payload["function"] == "echo-10"
    assert payload["endpoint"] == aws.endpoint and payload["region"] == "us-east-1"
    assert 0 < payload["remaining_ms"] <= 10_000
    assert payload["trace_disabled"] == "true"  # no X-Ray locally
    import base64

    tail = base64.b64decode(response["LogResult"]).decode()
    assert 'event {"a": 1}' in tail and "REPORT RequestId" in tail


def test_powertools_tracing_is_off_unless_the_function_sets_it(tmp_path: Path) -> None:
    runner = LambdaRunner(endpoint="http://localhost:1", cache_dir=tmp_path)

    def environment(variables: dict[str, str]) -> dict[str, str]:
        function = FunctionSpec(name="f", arn="arn", handler="app.f", code_zip=b"", environment=variables)
        return runner.environment(function, "request", tmp_path, 0.0)

    assert environment({})["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert environment({"POWERTOOLS_TRACE_DISABLED": "false"})["POWERTOOLS_TRACE_DISABLED"] == "false"
    assert environment({"AWS_ENDPOINT_URL": "https://elsewhere"})["AWS_ENDPOINT_URL"] == "http://localhost:1"


def test_handler_exception_is_an_unhandled_function_error_named_after_its_class(
    client: Callable[[str], Any], functions: Callable[..., str]
) -> None:
    payload, response = invoke(client, functions("throttled"), {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Throttled"
    assert payload["errorMessage"] == "slow down"
    assert any("in throttled" in line for line in payload["stackTrace"])


def test_timeout_kills_the_handler_and_reports_sandbox_timedout(
    client: Callable[[str], Any], functions: Callable[..., str]
) -> None:
    started = time.monotonic()
    payload, response = invoke(client, functions("sleepy", 1), {"seconds": 30})
    assert time.monotonic() - started < 5
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]


def test_runtime_errors_have_lambdas_error_types(client: Callable[[str], Any], functions: Callable[..., str]) -> None:
    payload, _ = invoke(client, functions("not_json"), {})
    assert payload["errorType"] == "Runtime.MarshalError"
    lambda_ = client("lambda")
    lambda_.create_function(
        FunctionName="missing-module",
        Runtime="python3.14",
        Role=ROLE_ARN,
        Handler="nowhere.handler",
        Code={"ZipFile": zipped({"app.py": FUNCTIONS})},
    )
    payload, response = invoke(client, "missing-module", {})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Runtime.ImportModuleError"


def test_event_invocation_runs_in_the_background(client: Callable[[str], Any], functions: Callable[..., str]) -> None:
    s3 = client("s3")
    s3.create_bucket(Bucket="async-bucket")
    response = client("lambda").invoke(
        FunctionName=functions("write"),
        InvocationType="Event",
        Payload=json.dumps({"bucket": "async-bucket", "key": "done"}),
    )
    assert response["StatusCode"] == 202
    wait_for(lambda: s3.list_objects_v2(Bucket="async-bucket").get("KeyCount"))
    assert s3.get_object(Bucket="async-bucket", Key="done")["Body"].read() == b"written"


def test_function_logs_reach_cloudwatch_logs(client: Callable[[str], Any], functions: Callable[..., str]) -> None:
    name = functions("echo")
    invoke(client, name, {"logged": True})
    events = client("logs").filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
    assert any('"logged": true' in event["message"] for event in events)


# --------------------------------------------------------------------------------------------------
# (b) a state machine created by CloudFormation runs
# --------------------------------------------------------------------------------------------------

DEFINITION = {
    "StartAt": "Fn",
    "States": {
        "Fn": {
            "Type": "Task",
            "Resource": "${Fn.Arn}",
            "Retry": [{"ErrorEquals": ["Throttled"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            "Next": "Head",
        },
        "Head": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:s3:headObject",
            "Parameters": {"Bucket.$": "$.bucket", "Key": "marker"},
            "ResultPath": "$.head",
            "Next": "Kind?",
        },
        "Kind?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.kind", "StringEquals": "dataset", "Next": "Pause"}],
            "Default": "Unknown",
        },
        "Pause": {"Type": "Wait", "Seconds": 0, "Next": "Done"},
        "Unknown": {"Type": "Fail", "Error": "UnknownKind"},
        "Done": {"Type": "Succeed"},
    },
}


def state_machine_template(bucket: str) -> dict[str, Any]:
    role = {"Fn::GetAtt": ["Role", "Arn"]}
    return {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}},
            },
            "Fn": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.14",
                    "Handler": "app.throttled_once",
                    "Role": role,
                    "Code": {"S3Bucket": bucket, "S3Key": "functions.zip"},
                    "Environment": {"Variables": {"BUCKET": bucket}},
                    "Timeout": 30,
                },
            },
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"RoleArn": role, "DefinitionString": {"Fn::Sub": json.dumps(DEFINITION)}},
            },
        },
        "Outputs": {"MachineArn": {"Value": {"Ref": "Machine"}}},
    }


def wait_for_execution(sfn: Any, arn: str, timeout: float = 30) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        description: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        return None if description["status"] == "RUNNING" else description

    result: dict[str, Any] = wait_for(finished, timeout)
    return result


def test_state_machine_created_by_cloudformation_runs_lambda_retry_choice_and_wait(
    client: Callable[[str], Any],
) -> None:
    s3, cfn, sfn = client("s3"), client("cloudformation"), client("stepfunctions")
    s3.create_bucket(Bucket="sfn-bucket")
    s3.put_object(Bucket="sfn-bucket", Key="functions.zip", Body=zipped({"app.py": FUNCTIONS}))
    cfn.create_stack(StackName="machine", TemplateBody=json.dumps(state_machine_template("sfn-bucket")))
    stack = cfn.describe_stacks(StackName="machine")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    machine = stack["Outputs"][0]["OutputValue"]

    # one after the other: only the first execution's first call is throttled (a marker object)
    first = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]  # unnamed
    executions = [wait_for_execution(sfn, first)]
    second = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]  # unnamed again
    executions.append(wait_for_execution(sfn, second))
    assert first != second
    for execution in executions:
        assert execution["status"] == "SUCCEEDED", execution
        output = json.loads(execution["output"])
        assert output["kind"] == "dataset"
        assert output["head"]["LastModified"].endswith("Z")  # a datetime, as an ISO 8601 string
    history = sfn.get_execution_history(executionArn=first)["events"]
    failures = [e["lambdaFunctionFailedEventDetails"] for e in history if e["type"] == "LambdaFunctionFailed"]
    assert [failure["error"] for failure in failures] == ["Throttled"]  # retried by its name


# --------------------------------------------------------------------------------------------------
# (c) Fn::GetStackOutput, (d) the CDK CLI's change-set flow
# --------------------------------------------------------------------------------------------------

PRODUCER = {
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "produced"}}},
    "Outputs": {"TopicArn": {"Value": {"Ref": "Topic"}}},
}


def consumer(region: Any) -> dict[str, Any]:
    reference = {"Fn::GetStackOutput": {"StackName": "producer", "OutputName": "TopicArn", "Region": region}}
    return {
        "Resources": {
            "Copy": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "/consumer/topic", "Type": "String", "Value": reference},
            }
        },
        "Outputs": {"Seen": {"Value": reference}},
    }


def test_get_stack_output_resolves_another_stacks_output(client: Callable[[str], Any]) -> None:
    cfn = client("cloudformation")
    cfn.create_stack(StackName="producer", TemplateBody=json.dumps(PRODUCER))
    cfn.create_stack(StackName="consumer", TemplateBody=json.dumps(consumer({"Ref": "AWS::Region"})))
    topic = "arn:aws:sns:us-east-1:123456789012:produced"
    outputs = cfn.describe_stacks(StackName="consumer")["Stacks"][0]["Outputs"]
    assert outputs == [{"OutputKey": "Seen", "OutputValue": topic}]
    assert client("ssm").get_parameter(Name="/consumer/topic")["Parameter"]["Value"] == topic

    bad = consumer("us-east-1")
    bad["Resources"]["Copy"]["Properties"]["Value"]["Fn::GetStackOutput"]["OutputName"] = "Nope"
    bad["Resources"]["Copy"]["Properties"]["Name"] = "/consumer/bad"
    cfn.create_stack(StackName="bad-consumer", TemplateBody=json.dumps(bad))
    stack = cfn.describe_stacks(StackName="bad-consumer")["Stacks"][0]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "has no output Nope" in stack["StackStatusReason"]


VERSIONED = {
    "Parameters": {
        "BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk-bootstrap/test/version"}
    },
    "Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "changed-queue"}}},
    "Outputs": {
        "QueueUrl": {"Value": {"Ref": "Queue"}},
        "Bootstrap": {"Value": {"Ref": "BootstrapVersion"}},
    },
}


def change_set(cfn: Any, template: dict[str, Any], kind: str, **kwargs: Any) -> dict[str, Any]:
    """What the CDK CLI does: create, wait until it settles, return its description."""
    cfn.create_change_set(
        StackName="changing",
        ChangeSetName="cdk-deploy-change-set",
        ChangeSetType=kind,
        TemplateBody=json.dumps(template),
        **kwargs,
    )

    def settled() -> dict[str, Any] | None:
        description: dict[str, Any] = cfn.describe_change_set(
            StackName="changing", ChangeSetName="cdk-deploy-change-set"
        )
        return None if description["Status"].endswith("IN_PROGRESS") else description

    result: dict[str, Any] = wait_for(settled)
    return result


def test_change_set_create_update_and_delete_like_the_cdk_cli(client: Callable[[str], Any]) -> None:
    cfn, ssm = client("cloudformation"), client("ssm")
    ssm.put_parameter(Name="/cdk-bootstrap/test/version", Type="String", Value="21")

    created = change_set(cfn, VERSIONED, "CREATE")
    assert created["Status"] == "CREATE_COMPLETE" and created["ExecutionStatus"] == "AVAILABLE"
    assert cfn.describe_stacks(StackName="changing")["Stacks"][0]["StackStatus"] == "REVIEW_IN_PROGRESS"
    cfn.execute_change_set(StackName="changing", ChangeSetName="cdk-deploy-change-set")
    stack = cfn.describe_stacks(StackName="changing")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["QueueUrl"].endswith("/changed-queue") and outputs["Bootstrap"] == "21"

    # the CLI deletes the executed change set, then finds it gone
    cfn.delete_change_set(StackName="changing", ChangeSetName="cdk-deploy-change-set")
    with pytest.raises(ClientError) as missing:
        cfn.describe_change_set(StackName="changing", ChangeSetName="cdk-deploy-change-set")
    assert missing.value.response["Error"]["Code"] == "ChangeSetNotFound"

    # update: a new resource and output, BootstrapVersion passed as UsePreviousValue (re-read from SSM)
    ssm.put_parameter(Name="/cdk-bootstrap/test/version", Type="String", Value="22", Overwrite=True)
    updated_template = json.loads(json.dumps(VERSIONED))
    updated_template["Resources"]["Topic"] = {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "added"}}
    updated_template["Outputs"]["TopicArn"] = {"Value": {"Ref": "Topic"}}
    previous = [{"ParameterKey": "BootstrapVersion", "UsePreviousValue": True}]
    updated = change_set(cfn, updated_template, "UPDATE", Parameters=previous)
    assert [c["ResourceChange"]["LogicalResourceId"] for c in updated["Changes"]] == ["Topic"]
    cfn.execute_change_set(StackName="changing", ChangeSetName="cdk-deploy-change-set")
    stack = cfn.describe_stacks(StackName="changing")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["TopicArn"].endswith(":added") and outputs["Bootstrap"] == "22"
    cfn.delete_change_set(StackName="changing", ChangeSetName="cdk-deploy-change-set")

    # no changes: the change set fails with the service's reason (the CLI then skips the stack)
    unchanged = change_set(cfn, updated_template, "UPDATE", Parameters=previous)
    assert unchanged["Status"] == "FAILED" and "didn't contain changes" in unchanged["StatusReason"]
    cfn.delete_change_set(StackName="changing", ChangeSetName="cdk-deploy-change-set")

    # destroy
    cfn.delete_stack(StackName="changing")
    with pytest.raises(ClientError):
        cfn.describe_stacks(StackName="changing")
    assert not [url for url in client("sqs").list_queues().get("QueueUrls", []) if "changed-queue" in url]


def test_termination_protection_is_kept_and_enforced(client: Callable[[str], Any]) -> None:
    cfn = client("cloudformation")
    cfn.create_stack(StackName="protected", TemplateBody=json.dumps(PRODUCER | {"Outputs": {}}))
    cfn.update_termination_protection(StackName="protected", EnableTerminationProtection=True)
    assert cfn.describe_stacks(StackName="protected")["Stacks"][0]["EnableTerminationProtection"] is True
    with pytest.raises(ClientError, match="TerminationProtection is enabled"):
        cfn.delete_stack(StackName="protected")
    cfn.update_termination_protection(StackName="protected", EnableTerminationProtection=False)
    cfn.delete_stack(StackName="protected")


def test_s3_eventbridge_notification_invokes_a_lambda_target(client: Callable[[str], Any]) -> None:
    s3, cfn = client("s3"), client("cloudformation")
    s3.create_bucket(Bucket="events-code")
    s3.put_object(Bucket="events-code", Key="functions.zip", Body=zipped({"app.py": FUNCTIONS}))
    template = {
        "Resources": {
            "Data": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "BucketName": "events-data",
                    "VersioningConfiguration": {"Status": "Enabled"},
                    "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
                },
            },
            "Recorder": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.14",
                    "Handler": "app.record",
                    "Role": ROLE_ARN,
                    "Code": {"S3Bucket": "events-code", "S3Key": "functions.zip"},
                    "Environment": {"Variables": {"BUCKET": "events-code"}},
                },
            },
            "Ready": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventPattern": {
                        "source": ["aws.s3"],
                        "detail-type": ["Object Created"],
                        "detail": {
                            "bucket": {"name": [{"Ref": "Data"}]},
                            "object": {"key": [{"wildcard": "*/_READY"}]},
                        },
                    },
                    "Targets": [{"Arn": {"Fn::GetAtt": ["Recorder", "Arn"]}, "Id": "recorder"}],
                },
            },
        }
    }
    cfn.create_stack(StackName="events", TemplateBody=json.dumps(template))
    assert cfn.describe_stacks(StackName="events")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert s3.get_bucket_versioning(Bucket="events-data")["Status"] == "Enabled"
    s3.put_object(Bucket="events-data", Key="set-1/part-0", Body=b"data")  # does not match the rule
    s3.put_object(Bucket="events-data", Key="set-1/_READY", Body=b"")
    seen = wait_for(lambda: s3.list_objects_v2(Bucket="events-code", Prefix="seen/").get("Contents"))
    assert [item["Key"] for item in seen] == ["seen/set-1/_READY"]
    event = json.loads(s3.get_object(Bucket="events-code", Key="seen/set-1/_READY")["Body"].read())
    assert event["source"] == "aws.s3" and event["detail"]["bucket"]["name"] == "events-data"


# --------------------------------------------------------------------------------------------------
# Custom resources backed by a Python function
# --------------------------------------------------------------------------------------------------


def custom_template(name: str, fail: str = "no") -> dict[str, Any]:
    return {
        "Resources": {
            "Writer": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "Runtime": "python3.14",
                    "Handler": "resource.handler",
                    "Role": ROLE_ARN,
                    "Code": {"S3Bucket": "custom-bucket", "S3Key": "resource.zip"},
                    "Timeout": 30,
                },
            },
            "Thing": {
                "Type": "Custom::Thing",
                "Properties": {
                    "ServiceToken": {"Fn::GetAtt": ["Writer", "Arn"]},
                    "Bucket": "custom-bucket",
                    "Name": name,
                    "Fail": fail,
                },
            },
        },
        "Outputs": {"Greeting": {"Value": {"Fn::GetAtt": ["Thing", "Greeting"]}}, "Id": {"Value": {"Ref": "Thing"}}},
    }


def test_custom_resource_gets_create_update_and_delete(client: Callable[[str], Any]) -> None:
    s3, cfn = client("s3"), client("cloudformation")
    s3.create_bucket(Bucket="custom-bucket")
    s3.put_object(Bucket="custom-bucket", Key="resource.zip", Body=zipped({"resource.py": CUSTOM_RESOURCE}))

    def request(kind: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(
            s3.get_object(Bucket="custom-bucket", Key=f"requests/{kind}/Thing")["Body"].read()
        )
        return document

    cfn.create_stack(StackName="custom", TemplateBody=json.dumps(custom_template("one")))
    stack = cfn.describe_stacks(StackName="custom")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]} == {"Greeting": "hello one", "Id": "thing-one"}
    assert request("Create")["ResponseURL"].startswith("http://localhost:")

    cfn.update_stack(StackName="custom", TemplateBody=json.dumps(custom_template("two")))
    update = request("Update")
    assert update["PhysicalResourceId"] == "thing-one"
    assert update["OldResourceProperties"]["Name"] == "one" and update["ResourceProperties"]["Name"] == "two"
    assert request("Delete")["PhysicalResourceId"] == "thing-one"  # replaced: the old one is deleted

    cfn.delete_stack(StackName="custom")
    assert request("Delete")["PhysicalResourceId"] == "thing-two"


def test_failed_custom_resource_rolls_the_stack_back_with_its_reason(client: Callable[[str], Any]) -> None:
    cfn = client("cloudformation")
    client("s3").create_bucket(Bucket="custom-bucket-2")
    template = custom_template("bad", fail="yes")
    template["Resources"]["Thing"]["Properties"]["Bucket"] = "custom-bucket-2"
    template["Resources"]["Writer"]["Properties"]["Code"]["S3Bucket"] = "custom-bucket"
    cfn.create_change_set(
        StackName="custom-bad", ChangeSetName="cs", ChangeSetType="CREATE", TemplateBody=json.dumps(template)
    )
    cfn.execute_change_set(StackName="custom-bad", ChangeSetName="cs")
    stack = cfn.describe_stacks(StackName="custom-bad")["Stacks"][0]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "asked to fail" in stack["StackStatusReason"]
    events = cfn.describe_stack_events(StackName="custom-bad")["StackEvents"]
    assert any(e["LogicalResourceId"] == "Thing" and e["ResourceStatus"] == "CREATE_FAILED" for e in events)


# --------------------------------------------------------------------------------------------------
# Clean-up: function processes die with the emulator; the process mode
# --------------------------------------------------------------------------------------------------


def test_control_route_rejects_unknown_paths(aws: Emulator) -> None:
    request = urllib.request.Request(f"{aws.endpoint}/_panopipe/nothing", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 404


def test_stopping_the_emulator_kills_running_functions_and_undoes_the_patches(
    aws: Emulator, client: Callable[[str], Any], functions: Callable[..., str]
) -> None:
    # run last in this module: it stops the module's emulator
    client("lambda").invoke(
        FunctionName=functions("sleepy", 60), InvocationType="Event", Payload=json.dumps({"seconds": 60})
    )
    runner = moto_patches.lambda_runner()
    pids = wait_for(runner.pids)
    aws.stop()
    assert wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=5)
    assert moto_patches.installed() is None
    from moto.awslambda.models import LambdaFunction
    from moto.core.config import default_user_config

    assert default_user_config["lambda"]["use_docker"] is True
    assert "invoke" in LambdaFunction.__dict__ and LambdaFunction.invoke.__module__ == "moto.awslambda.models"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as dead
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def test_process_mode_writes_its_state_and_stops_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state_file = tmp_path / "local.json"
    state = launch(state_file, panorama_devices=["lobby,site=hall%2C 1,floor=", "id:device-x"], timeout=60)
    try:
        assert read_state(state_file) == state
        assert state.endpoint == f"http://localhost:{state.port}"
        with urllib.request.urlopen(f"{state.endpoint}/_panopipe/health", timeout=5) as response:
            assert json.load(response)["pid"] == state.pid
        s3 = boto3.client(
            "s3",
            endpoint_url=state.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket="in-the-process")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["in-the-process"]
        for name, value in state.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        devices = panorama.new_client().list_devices(SortBy="NAME")["Devices"]
        assert [(d["DeviceId"], d["Name"], d["Tags"]) for d in devices] == [
            ("device-x", "device-x", {}),
            (device_id_for_name("lobby"), "lobby", {"site": "hall, 1", "floor": ""}),
        ]
    finally:
        assert terminate(state_file)
    assert not state_file.exists()
    assert not _alive(state.pid)
    assert "stopped" in (tmp_path / "local.log").read_text()


def test_terminate_kills_only_a_process_that_serves_as_the_emulator(tmp_path: Path) -> None:
    """A stale state file whose pid now belongs to another process (here: this test) kills nothing."""
    state_file = tmp_path / "local.json"
    state_file.write_text(json.dumps({"endpoint": "http://localhost:9", "port": 9, "pid": os.getpid()}))
    assert terminate(state_file) is False
    assert not state_file.exists()
