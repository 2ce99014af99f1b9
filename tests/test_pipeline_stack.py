"""The pipeline stack: state machine definition, step functions, least-privilege IAM, triggers, alarms."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambda_handlers import settings
from lambda_handlers.settings import StepSettings, parse
from panopipe.config import load_config
from panopipe.config.step_settings import step_settings_json
from stacks.steps.state_machine import RETRY_ERRORS, TASK_SLACK_SECONDS
from stacks.steps.step_spec import StepSpec
from stacks.steps.trigger_spec import TRIGGER
from tests.conftest import ROOT, STAGE_CONFIGS, Synthesized


def _steps() -> tuple[StepSpec, ...]:
    """The step specs in the order a run meets them (the state machine's own order)."""
    from stacks.steps import (
        compilation_spec,
        deployment_lock_spec,
        deployment_spec,
        fleet_spec,
        notify_spec,
        package_registration_spec,
        preparation_spec,
        rollback_spec,
        training_spec,
        validate_input_spec,
    )

    return (
        validate_input_spec.VALIDATE_INPUT,
        preparation_spec.START_PREPARATION,
        preparation_spec.CHECK_PREPARATION,
        training_spec.START_TRAINING,
        training_spec.CHECK_TRAINING,
        training_spec.EVALUATE,
        compilation_spec.START_COMPILATION,
        compilation_spec.CHECK_COMPILATION,
        deployment_lock_spec.ACQUIRE_LOCK,
        deployment_lock_spec.CHECK_LOCK,
        package_registration_spec.REGISTER_PACKAGE,
        package_registration_spec.CHECK_REGISTRATION,
        fleet_spec.PLAN_DEPLOYMENT,
        deployment_spec.DEPLOY,
        deployment_spec.CHECK_DEPLOYMENT,
        rollback_spec.ROLLBACK,
        rollback_spec.CHECK_ROLLBACK,
        fleet_spec.FINISH_DEPLOYMENT,
        deployment_lock_spec.RELEASE_LOCK,
        notify_spec.NOTIFY,
    )


STEPS = _steps()
STEP_BY_ID = {s.id: s for s in STEPS}
#: Every function's role may write X-Ray traces (active tracing): no resource-level permission.
XRAY = {"xray:PutTraceSegments": "active tracing", "xray:PutTelemetryRecords": "active tracing"}

#: Every statement whose Resource is "*", with the reason it cannot be narrower.
STAR_RESOURCES = {
    **{(s.id, action): why for s in (*STEPS, TRIGGER) for action, why in XRAY.items()},
    ("SageMakerExecution", "ecr:GetAuthorizationToken"): "no resource-level permission",
    ("RegisterPackage", "panorama:CreatePackage"): "no resource-level permission",
    ("Deploy", "panorama:CreateApplicationInstance"): "no resource-level permission",
    ("Deploy", "panorama:ListApplicationInstances"): "List action: no resource-level permission",
    ("PlanDeployment", "panorama:ListDevices"): "List action: no resource-level permission",
    ("Rollback", "panorama:CreateApplicationInstance"): "no resource-level permission",
    ("Rollback", "panorama:ListApplicationInstances"): "List action: no resource-level permission",
    ("StateMachine", "xray:PutTraceSegments"): "X-Ray tracing: no resource-level permission",
    ("StateMachine", "xray:PutTelemetryRecords"): "X-Ray tracing: no resource-level permission",
    ("StateMachine", "xray:GetSamplingRules"): "X-Ray tracing: no resource-level permission",
    ("StateMachine", "xray:GetSamplingTargets"): "X-Ray tracing: no resource-level permission",
    ("StateMachine", "logs:CreateLogDelivery"): "vended log delivery: no resource-level permission",
    ("StateMachine", "logs:GetLogDelivery"): "vended log delivery: no resource-level permission",
    ("StateMachine", "logs:UpdateLogDelivery"): "vended log delivery: no resource-level permission",
    ("StateMachine", "logs:DeleteLogDelivery"): "vended log delivery: no resource-level permission",
    ("StateMachine", "logs:ListLogDeliveries"): "vended log delivery: no resource-level permission",
    ("StateMachine", "logs:PutResourcePolicy"): "vended log delivery: no resource-level permission",
    ("StateMachine", "logs:DescribeResourcePolicies"): "vended log delivery: no resource-level permission",
    ("StateMachine", "logs:DescribeLogGroups"): "vended log delivery: no resource-level permission",
}


def _resolve(value: Any) -> str:
    """A definition string with its GetAtt tokens replaced by ``<LogicalId>``."""
    if isinstance(value, str):
        return value
    if "Fn::Join" in value:
        return "".join(_resolve(part) for part in value["Fn::Join"][1])
    if "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}>"
    if "Ref" in value:
        return f"<{value['Ref']}>"
    raise AssertionError(value)


def definition(synthesized: Synthesized, stage: str = "dev") -> dict[str, Any]:
    (machine,) = synthesized.resources(stage, "Pipeline", "AWS::StepFunctions::StateMachine").values()
    return json.loads(_resolve(machine["Properties"]["DefinitionString"]))  # type: ignore[no-any-return]


def functions(synthesized: Synthesized, stage: str = "dev") -> dict[str, dict[str, Any]]:
    """Step functions by step id (the handler path names the step's module and function)."""
    by_handler = {s.handler_path: s.id for s in (*STEPS, TRIGGER)}
    found = {}
    for resource in synthesized.resources(stage, "Pipeline", "AWS::Lambda::Function").values():
        found[by_handler[resource["Properties"]["Handler"]]] = resource["Properties"]
    return found


def statements(synthesized: Synthesized, stage: str = "dev") -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, statement) of every policy in the pipeline stack; owner = step id or StateMachine."""
    for logical_id, policy in synthesized.resources(stage, "Pipeline", "AWS::IAM::Policy").items():
        owner = logical_id.removeprefix("Pipeline").split("Role")[0]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield owner, statement


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict[str, Any]) -> list[Any]:
    resources = statement["Resource"]
    return resources if isinstance(resources, list) else [resources]


# --- state machine ----------------------------------------------------------------------------


#: Steps from which on a run may hold the deployment lock: their failures release it first.
LOCKED = {"AcquireLock", "CheckLock", "RegisterPackage", "CheckRegistration", "PlanDeployment", "FinishDeployment"}
FLEET_MAP = "Deploy batches"
RELEASE_FAILED = "Release lock of a failed run"
#: The task states a spec appears as more than once (its id → the state names).
REPEATED = {
    "Notify": ["Notify failure", "Notify success", "Notify superseded"],
    "ReleaseLock": ["ReleaseLock", RELEASE_FAILED],
}


def every_state(states: dict[str, Any]) -> dict[str, Any]:
    """The states of the definition and of its Map's iteration (their names are unique)."""
    found = dict(states)
    for state in states.values():
        if state["Type"] == "Map":
            found.update(every_state(state["ItemProcessor"]["States"]))
    return found


def _step_id(name: str) -> str:
    return next((step for step, names in REPEATED.items() if name in names), name)


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_every_task_has_a_timeout_retries_transient_errors_with_backoff_and_catches_the_rest(
    synthesized: Synthesized, stage: str
) -> None:
    top = definition(synthesized, stage)["States"]
    states = every_state(top)
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert len(tasks) == len(STEPS) + sum(len(names) - 1 for names in REPEATED.values())
    for name, state in tasks.items():
        (retry,) = state["Retry"]
        assert retry["ErrorEquals"] == list(RETRY_ERRORS), name
        assert (retry["IntervalSeconds"], retry["MaxAttempts"], retry["BackoffRate"]) == (2, 6, 2), name
        assert retry["JitterStrategy"] == "FULL" and retry["MaxDelaySeconds"] == 60, name
        assert state["TimeoutSeconds"] == STEP_BY_ID[_step_id(name)].timeout_seconds + TASK_SLACK_SECONDS, name
        if name not in top:  # inside the Map: a step's failure ends its batch only, with what it knows
            (catch,) = state["Catch"]
            assert catch["ErrorEquals"] == ["States.ALL"] and catch["ResultPath"] == "$.error", name
            ender = states[catch["Next"]]
            assert ender["Type"] == "Pass" and ender["End"] and ender["Parameters"]["error.$"] == "$.error", name
            assert catch["Next"] == ("Batch not deployed" if name == "Deploy" else "Batch failed"), name
            continue
        (catch,) = state["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"], name
        if name.startswith("Notify"):
            assert states[catch["Next"]]["Type"] == "Fail", "a failed notification still ends the run"
        elif _step_id(name) == "ReleaseLock":
            assert catch["ResultPath"] == "$.lock_error" and catch["Next"] == state["Next"], "the report goes on"
        else:
            assert catch["ResultPath"] == "$.error", name
            recorder = states[catch["Next"]]
            assert recorder == {
                "Type": "Pass",
                "Result": name,
                "ResultPath": "$.failed_step",
                "Next": RELEASE_FAILED if name in LOCKED else "Notify failure",
            }
    (catch,) = top[FLEET_MAP]["Catch"]
    assert top[catch["Next"]]["Next"] == RELEASE_FAILED


def test_the_run_has_a_timeout_from_the_config(synthesized: Synthesized) -> None:
    for stage, path in STAGE_CONFIGS.items():
        config = load_config(path, base_dir=ROOT)
        assert definition(synthesized, stage)["TimeoutSeconds"] == config.run_timeout_seconds


def test_wait_loops_poll_at_the_configured_interval(synthesized: Synthesized) -> None:
    states = every_state(definition(synthesized)["States"])
    waits = {name: s for name, s in states.items() if s["Type"] == "Wait" and "Seconds" in s}
    assert sorted(waits) == [
        "Wait for compilation",
        "Wait for deployment",
        "Wait for lock",
        "Wait for package",
        "Wait for preparation",
        "Wait for rollback",
        "Wait for training",
    ]
    poll = load_config(STAGE_CONFIGS["dev"], base_dir=ROOT).runs.poll_seconds
    for name, wait in waits.items():
        assert wait["Seconds"] == poll, name
        check = states[wait["Next"]]
        choice = states[check["Next"]]
        assert choice["Type"] == "Choice" and choice["Choices"][0]["Next"] == name
        assert choice["Choices"][0]["StringEquals"] == "IN_PROGRESS"


def test_sources_without_training_go_straight_to_compilation(synthesized: Synthesized) -> None:
    states = definition(synthesized)["States"]
    route = states[states["ValidateInput"]["Next"]]
    assert route["Choices"] == [{"Variable": "$.source.kind", "StringEquals": "dataset", "Next": "Prepare first?"}]
    assert route["Default"] == "StartCompilation"


def test_raw_image_data_sets_are_prepared_before_training(synthesized: Synthesized) -> None:
    states = definition(synthesized)["States"]
    prepare = states["Prepare first?"]
    assert prepare["Choices"] == [
        {
            "And": [
                {"Variable": "$.source.prepare", "IsPresent": True},
                {"Variable": "$.source.prepare", "BooleanEquals": True},
            ],
            "Next": "StartPreparation",
        }
    ]
    assert prepare["Default"] == "StartTraining"
    assert states["StartPreparation"]["Next"] == "CheckPreparation"
    assert states[states["CheckPreparation"]["Next"]]["Default"] == "StartTraining"
    caught = states["CheckPreparation"]["Catch"]
    assert caught[0]["ErrorEquals"] == ["States.ALL"] and caught[0]["Next"] == "CheckPreparation failed"


def test_without_the_preparation_step_data_sets_go_straight_to_training(tmp_path: Path) -> None:
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from stacks.stage import EnvironmentStage

    config = load_config(STAGE_CONFIGS["dev"], base_dir=ROOT, overrides={"preparation.enabled": False})
    app = App(outdir=str(tmp_path))
    stage = EnvironmentStage(app, "NoPrep", config=config)
    template = Template.from_stack(stage.pipeline).to_json()
    (machine,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    text = json.dumps(machine["Properties"]["DefinitionString"])
    assert "Prepare first?" not in text and "StartPreparation" not in text


def test_each_batch_rolls_back_its_failed_devices_and_a_failure_anywhere_fails_the_run(
    synthesized: Synthesized,
) -> None:
    top = definition(synthesized)["States"]
    fleet = top[FLEET_MAP]
    assert fleet["ItemsPath"] == "$.fleet.batches" and fleet["ResultPath"] == "$.fleet.results"
    assert fleet["ItemSelector"]["batch.$"] == "$$.Map.Item.Value"
    assert fleet["MaxConcurrency"] == 40
    states = fleet["ItemProcessor"]["States"]
    assert fleet["ItemProcessor"]["StartAt"] == "Wait for the batch's turn"
    assert states["Wait for the batch's turn"] == {
        "Type": "Wait",
        "TimestampPath": "$.batch.start_at",
        "Next": "Deploy",
    }
    after_check = states[states["CheckDeployment"]["Next"]]
    succeeded = [c for c in after_check["Choices"] if c.get("StringEquals") == "SUCCEEDED"]
    assert succeeded[0]["Next"] == "Batch deployed" and states["Batch deployed"]["End"]
    assert after_check["Default"] == "Rollback"
    assert states[states["CheckRollback"]["Next"]]["Default"] == "Batch rolled back"
    assert top[FLEET_MAP]["Next"] == "FinishDeployment"
    deployed = top[top["FinishDeployment"]["Next"]]
    assert deployed["Choices"] == [
        {"Variable": "$.deployment.status", "StringEquals": "SUCCEEDED", "Next": "ReleaseLock"}
    ]
    assert deployed["Default"] == RELEASE_FAILED
    assert top["ReleaseLock"]["Next"] == "Notify success" and top[RELEASE_FAILED]["Next"] == "Notify failure"
    assert top["Notify failure"]["Next"] == "Run failed"
    assert top["Run failed"] == {"Type": "Fail", "ErrorPath": "$.summary.error", "CausePath": "$.summary.reason"}
    assert top[top["Notify success"]["Next"]]["Type"] == "Succeed"


def test_the_lock_comes_after_compilation_and_a_superseded_run_succeeds_without_deploying(
    synthesized: Synthesized,
) -> None:
    top = definition(synthesized)["States"]
    assert top[top["CheckCompilation"]["Next"]]["Default"] == "AcquireLock"
    choice = top[top["CheckLock"]["Next"]]
    assert {c["StringEquals"]: c["Next"] for c in choice["Choices"]} == {
        "IN_PROGRESS": "Wait for lock",
        "SUPERSEDED": "Notify superseded",
    }
    assert choice["Default"] == "RegisterPackage"
    assert top[top["Notify superseded"]["Next"]]["Type"] == "Succeed"
    assert top[top["CheckRegistration"]["Next"]]["Default"] == "PlanDeployment"
    assert top["PlanDeployment"]["Next"] == FLEET_MAP


def test_a_failed_notification_still_fails_the_run_with_a_named_error(synthesized: Synthesized) -> None:
    states = definition(synthesized)["States"]
    for notify in REPEATED["Notify"]:
        (catch,) = states[notify]["Catch"]
        assert catch["ResultPath"] == "$.notify_error", "the run's state (and its own error) is kept"
        fail = states[catch["Next"]]
        assert fail["Type"] == "Fail" and fail["Error"] == "NotificationFailed" and fail["Cause"]


def test_first_state_carries_the_input_and_the_run_name(synthesized: Synthesized) -> None:
    spec = definition(synthesized)
    start = spec["States"][spec["StartAt"]]
    assert start["Parameters"] == {
        "input.$": "$",
        "run": {"name.$": "$$.Execution.Name", "started.$": "$$.Execution.StartTime"},
    }


def test_state_machine_is_standard_logged_and_traced(synthesized: Synthesized) -> None:
    (machine,) = synthesized.resources("dev", "Pipeline", "AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["StateMachineName"] == "panopipe-dev-pipeline"
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["TracingConfiguration"] == {"Enabled": True}


# --- functions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [*STEPS, TRIGGER], ids=lambda s: s.id)
def test_every_handler_is_its_modules_function_of_the_states_name(step: StepSpec) -> None:
    module, function = step.handler_path.rsplit(".", 1)
    assert module == step.handler.__module__ and module.startswith("lambda_handlers.")
    assert "".join(w.capitalize() for w in function.split("_")) == step.id
    assert callable(step.handler)


def test_the_state_machine_chains_every_spec_in_run_order(synthesized: Synthesized) -> None:
    """Each spec is one state (Notify and ReleaseLock more than once); nothing in the chain lacks a spec."""
    states = every_state(definition(synthesized)["States"])
    tasks = [name for name, state in states.items() if state["Type"] == "Task"]
    assert sorted(tasks) == sorted(
        [s.id for s in STEPS if s.id not in REPEATED] + [name for names in REPEATED.values() for name in names]
    )


def test_each_function_gets_only_its_variables_and_the_settings(synthesized: Synthesized) -> None:
    config = load_config(STAGE_CONFIGS["script"], base_dir=ROOT)
    found = functions(synthesized, "script")
    assert sorted(found) == sorted(s.id for s in (*STEPS, TRIGGER))
    for step in (*STEPS, TRIGGER):
        props = found[step.id]
        variables = props["Environment"]["Variables"]
        assert set(variables) == {*step.variables, settings.STEP_SETTINGS, "POWERTOOLS_SERVICE_NAME"}, step.id
        if step.id != "StartTraining":
            assert settings.TRAINING_SOURCE not in variables
        assert variables[settings.STEP_SETTINGS] == step_settings_json(config)
        assert variables["POWERTOOLS_SERVICE_NAME"] == config.prefix
        assert props["Runtime"] == "python3.14" and props["Timeout"] <= 900
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert "AWSLambdaPowertoolsPythonV3-python314-x86_64" in json.dumps(props["Layers"])


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_the_settings_document_round_trips_into_the_handlers_types(stage: str) -> None:
    """One serializer (the config's dump) and one strict parser: a field on one side only fails here."""
    config = load_config(STAGE_CONFIGS[stage], base_dir=ROOT)
    parsed = parse(StepSettings, json.loads(step_settings_json(config)))
    assert parsed.prefix == config.prefix and parsed.model.input_shape == config.model.input_shape
    assert parsed.training.metric.name == config.training.metric.name
    assert parsed.training_timeout_seconds == config.training_timeout_seconds


def test_the_parser_refuses_a_field_the_handlers_do_not_declare() -> None:
    document = json.loads(step_settings_json(load_config(STAGE_CONFIGS["dev"], base_dir=ROOT)))
    document["model"]["surprise"] = 1
    with pytest.raises(ValueError, match=r"settings.model: unknown fields \['surprise'\]"):
        parse(StepSettings, document)
    del document["model"]["surprise"], document["runs"]["poll_seconds"]
    with pytest.raises(ValueError, match=r"missing fields \['poll_seconds'\]"):
        parse(StepSettings, document)


def test_settings_fit_the_lambda_environment_limit() -> None:
    """Lambda allows 4 KB of variables per function; the settings are the bulk of it."""
    for path in STAGE_CONFIGS.values():
        assert len(step_settings_json(load_config(path, base_dir=ROOT))) < 3000


def test_the_asset_holds_only_the_handlers_and_the_manifest_builders(synthesized: Synthesized) -> None:
    code = functions(synthesized)["Deploy"]["Code"]
    assert "S3Key" in code
    staged = [p for p in synthesized.outdir.rglob("asset.*") if (p / "lambda_handlers").is_dir()]
    assert staged
    for asset in staged:
        top = sorted(p.name for p in asset.iterdir())
        assert top == ["lambda_handlers", "panorama_app"], top
        assert sorted(p.name for p in (asset / "panorama_app").iterdir()) == ["__init__.py", "manifest"]
        assert not list(asset.rglob("__pycache__"))
        assert (asset / "lambda_handlers/botocore_data/panorama/2019-07-24/service-2.json.gz").is_file()
        assert (asset / "lambda_handlers/botocore_data/NOTICE").is_file()


# --- IAM ------------------------------------------------------------------------------------------


def test_star_resources_are_only_where_the_api_has_no_resource_level_permission(synthesized: Synthesized) -> None:
    found = set()
    for owner, statement in statements(synthesized):
        if "*" in _resources(statement):
            found |= {(owner, action) for action in _actions(statement)}
    assert found == set(STAR_RESOURCES)


def test_pass_role_only_for_the_two_service_roles_to_their_services(synthesized: Synthesized) -> None:
    passes = [(o, s) for o, s in statements(synthesized) if "iam:PassRole" in _actions(s)]
    assert sorted(o for o, _ in passes) == [
        "Deploy",
        "Rollback",
        "StartCompilation",
        "StartPreparation",
        "StartTraining",
    ]
    for owner, statement in passes:
        assert _actions(statement) == ["iam:PassRole"]
        service = "panorama" if owner in ("Deploy", "Rollback") else "sagemaker"
        assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": f"{service}.amazonaws.com"}}
        (role,) = _resources(statement)
        expected = "PanoramaRuntimeRole" if service == "panorama" else "SageMakerExecutionRole"
        assert expected in json.dumps(role)


def test_jobs_are_scoped_to_this_environment(synthesized: Synthesized) -> None:
    for owner, statement in statements(synthesized, "example"):
        for action in _actions(statement):
            if action.startswith("sagemaker:") and owner != "ValidateInput":
                (resource,) = _resources(statement)
                assert resource.endswith(
                    (
                        "processing-job/panopipe-prod-prep-*",
                        "training-job/panopipe-prod-train-*",
                        "compilation-job/panopipe-prod-neo-*",
                    )
                )


def test_no_step_may_delete_data_or_artifacts(synthesized: Synthesized) -> None:
    for owner, statement in statements(synthesized):
        for action in _actions(statement):
            assert not action.startswith(("s3:Delete", "s3:PutBucket", "kms:Schedule", "kms:Disable")), owner


def test_only_the_notify_step_publishes(synthesized: Synthesized) -> None:
    publishers = {o for o, s in statements(synthesized) if "sns:Publish" in _actions(s)}
    assert publishers == {"Notify"}


# --- triggers and monitoring ----------------------------------------------------------------------


def test_ready_marker_rule_targets_the_trigger_with_retries(synthesized: Synthesized) -> None:
    rules = synthesized.resources("dev", "Pipeline", "AWS::Events::Rule")
    assert len(rules) == 1  # dev has no schedule
    (rule,) = rules.values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"]["key"] == [{"wildcard": "datasets/*/_READY"}]
    assert "aws-panorama-panopipe-dev-data" in json.dumps(pattern["detail"]["bucket"]["name"])
    (target,) = rule["Properties"]["Targets"]
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 8}


def test_schedule_from_the_config_passes_the_prefix(synthesized: Synthesized) -> None:
    rules = synthesized.resources("example", "Pipeline", "AWS::Events::Rule")
    (scheduled,) = [r for r in rules.values() if "ScheduleExpression" in r["Properties"]]
    assert scheduled["Properties"]["ScheduleExpression"] == "cron(0 3 ? * MON *)"
    (target,) = scheduled["Properties"]["Targets"]
    assert json.loads(target["Input"]) == {"schedule": {"prefix": "datasets/"}}


def test_failed_timed_out_and_aborted_runs_alarm_to_the_topic(synthesized: Synthesized) -> None:
    alarms = synthesized.resources("dev", "Pipeline", "AWS::CloudWatch::Alarm")
    metrics = sorted(a["Properties"]["MetricName"] for a in alarms.values() if "MetricName" in a["Properties"])
    assert metrics == ["ExecutionsAborted", "ExecutionsFailed", "ExecutionsTimedOut"]
    for alarm in alarms.values():  # the runs' and the devices' (tests/test_application_stack.py)
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "NotificationsTopicAE679CBD"}]


def test_dashboard_shows_runs_and_every_step(synthesized: Synthesized) -> None:
    (dashboard,) = synthesized.resources("dev", "Pipeline", "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for step in STEPS:
        assert f'\\"label\\":\\"{step.id}\\"' in body, step.id
    assert "ExecutionsStarted" in body and "ExecutionTime" in body


# --- script mode ----------------------------------------------------------------------------------


def test_script_mode_uploads_a_deterministic_source_archive(synthesized: Synthesized, tmp_path: Any) -> None:
    import io
    import tarfile

    from stacks.source_archive import archive_bytes, write_archive

    directory = ROOT / "tests" / "fixtures"
    assert archive_bytes(directory) == archive_bytes(directory), "same sources, same bytes, same asset hash"
    archive = write_archive(directory, tmp_path)
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["train_detector.py"]
    assert {(m.mtime, m.uid, m.gid) for m in members} == {(0, 0, 0)}

    start = functions(synthesized, "script")["StartTraining"]["Environment"]["Variables"]
    assert "Fn::" in json.dumps(start[settings.TRAINING_SOURCE]), "the asset's S3 URL, resolved at deploy time"
    parsed = parse(StepSettings, json.loads(start[settings.STEP_SETTINGS]))
    assert parsed.training.program == "train_detector.py"
    builtin = functions(synthesized, "dev")["StartTraining"]["Environment"]["Variables"]
    assert settings.TRAINING_SOURCE not in builtin


#: What each step's handler calls (lambda_handlers/<module>.py), as IAM actions: its role must allow
#: every one (IAM is not enforced locally, so this is where a missing grant shows).
#: The deployment lock: read it, write it conditionally (PutObject), SSE-KMS.
LOCK_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "kms:Decrypt", "kms:GenerateDataKey"}
REQUIRED_ACTIONS = {
    "ValidateInput": {"s3:GetObject", "s3:ListBucket", "sagemaker:DescribeTrainingJob"},
    "StartPreparation": {
        "sagemaker:CreateProcessingJob",
        "sagemaker:DescribeProcessingJob",
        "iam:PassRole",
        "s3:GetObject",
        "s3:PutObject",
        "kms:GenerateDataKey",
    },
    "CheckPreparation": {
        "sagemaker:DescribeProcessingJob",
        "sagemaker:StopProcessingJob",
        "s3:GetObject",
        "s3:ListBucket",
        "kms:Decrypt",
    },
    "StartTraining": {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "iam:PassRole"},
    "CheckTraining": {"sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"},
    "Evaluate": {"sagemaker:DescribeTrainingJob"},
    "StartCompilation": {"sagemaker:CreateCompilationJob", "sagemaker:DescribeCompilationJob", "iam:PassRole"},
    "CheckCompilation": {"sagemaker:DescribeCompilationJob", "sagemaker:StopCompilationJob"},
    "RegisterPackage": {
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:PutObjectAcl",
        "kms:Decrypt",
        "panorama:DescribePackage",
        "panorama:CreatePackage",
        "panorama:RegisterPackageVersion",
        "panorama:DescribePackageVersion",
    },
    "CheckRegistration": {
        "panorama:DescribePackageVersion",
        "panorama:DeregisterPackageVersion",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "kms:GenerateDataKey",
    },
    "Deploy": {
        "panorama:ListApplicationInstances",
        "panorama:CreateApplicationInstance",
        "panorama:DescribeApplicationInstance",
        "panorama:RemoveApplicationInstance",
        "panorama:TagResource",
        "iam:PassRole",
        "s3:GetObject",
        "s3:PutObject",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    },
    "CheckDeployment": {"panorama:DescribeApplicationInstance", *LOCK_ACTIONS},
    "Rollback": {
        "panorama:ListApplicationInstances",
        "panorama:CreateApplicationInstance",
        "panorama:TagResource",
        "iam:PassRole",
        "s3:GetObject",
        "s3:ListBucket",
        "s3:PutObject",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    },
    "CheckRollback": {"panorama:DescribeApplicationInstance", *LOCK_ACTIONS},
    "AcquireLock": {*LOCK_ACTIONS, "s3:ListBucket"},  # HeadObject of the data set's marker: GetObject
    "CheckLock": {*LOCK_ACTIONS, "s3:ListBucket"},
    "ReleaseLock": LOCK_ACTIONS,
    "PlanDeployment": {"panorama:ListDevices", *LOCK_ACTIONS},
    "Notify": {"sns:Publish", "kms:GenerateDataKey"},
    "Trigger": {"states:StartExecution", "states:DescribeExecution", "s3:ListBucketVersions", "s3:GetObject"},
}


def test_every_step_may_make_the_calls_its_handler_makes(synthesized: Synthesized) -> None:
    from fnmatch import fnmatchcase

    allowed: dict[str, set[str]] = {}
    for owner, statement in statements(synthesized, "script"):
        allowed.setdefault(owner, set()).update(_actions(statement))
    for step_id, needed in REQUIRED_ACTIONS.items():
        missing = {a for a in needed if not any(fnmatchcase(a, pattern) for pattern in allowed.get(step_id, ()))}
        assert not missing, f"{step_id} lacks {sorted(missing)}"
