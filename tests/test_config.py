"""Configuration: every bad input fails with one message naming the file, field, value and rule."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from panopipe.config import ConfigError, EnvironmentConfig, load_config, parse_config
from tests.conftest import ROOT

DEV = yaml.safe_load((ROOT / "config" / "dev.yaml").read_text())
SCRIPT = yaml.safe_load((ROOT / "tests" / "configs" / "script.yaml").read_text())
NAN, INF = float("nan"), float("inf")


def _with(changes: dict[str, Any], base: dict[str, Any] = DEV) -> dict[str, Any]:
    """The dev config (or ``base``) with dotted-path changes applied; a value of ``...`` deletes the key."""
    data: dict[str, Any] = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is ...:
            del node[leaf]
        elif isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return data


def _problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "config/bad.yaml", base_dir=ROOT)
    assert str(caught.value).startswith("invalid configuration config/bad.yaml (")
    return [str(p) for p in caught.value.problems]


BAD_CONFIGS: dict[str, tuple[dict[str, Any], str, str]] = {
    # id: (changes to dev.yaml, expected field, expected words of the rule)
    "missing-project": ({"project": ...}, "project", "required field is missing"),
    "project-upper-case": ({"project": "PanoPipe"}, "project", "must be lower-case letters and digits"),
    "environment-with-dash": ({"environment": "dev-1"}, "environment", "must be lower-case letters and digits"),
    "account-not-12-digits": ({"account": "12345"}, "account", "must be a 12-digit AWS account id"),
    "account-unquoted": ({"account": 123456789012}, "account", "must be text: quote the value in YAML"),
    "framework-version-unquoted": ({"model.framework_version": 1.8}, "model.framework_version", "quote the value"),
    "nested-hyperparameter": (
        {"training.hyperparameters.x": {"a": 1}},
        "training.hyperparameters.x",
        "must be a string, a number or true/false",
    ),
    "schedule-not-an-expression": (
        {"runs.schedule": "every monday"},
        "runs.schedule",
        "must be an EventBridge schedule: rate(<n> minutes|hours|days) or cron(<6 fields>)",
    ),
    "dataset-prefix-without-slash": (
        {"runs.dataset_prefix": "datasets"},
        "runs.dataset_prefix",
        "ending in /",
    ),
    "keep-more-versions-than-the-quota": (
        {"runs.keep_package_versions": 25},
        "runs.keep_package_versions",
        "less than or equal to 20",
    ),
    "training-timeout-shorter-than-the-job": (
        {"runs.training_timeout_seconds": 600},
        "runs.training_timeout_seconds",
        "must be at least the training job's own limit (7200 s",
    ),
    "compilation-timeout-shorter-than-the-job": (
        {"runs.compilation_timeout_seconds": 300},
        "runs.compilation_timeout_seconds",
        "must be at least compilation.max_runtime_seconds (900)",
    ),
    "run-timeout-shorter-than-its-loops": (
        {"runs.run_timeout_seconds": 3600},
        "runs.run_timeout_seconds",
        "must cover every wait loop at its timeout",
    ),
    "no-compilation-target": ({"compilation": {"target_device": None}}, "compilation", "needs a Neo target"),
    "max-wait-without-spot": (
        {"training.spot": False, "training.max_wait_seconds": 100},
        "training.max_wait_seconds",
        "applies only when spot is true",
    ),
    "classes-of-interest-unknown": (
        {"application": {"classes_of_interest": ["dog"]}},
        "application.classes_of_interest",
        "not in model.classes (empty, person)",
    ),
    "threshold-above-one": ({"application": {"threshold": 1.5}}, "application.threshold", "less than or equal to 1"),
    "region-without-panorama": ({"region": "eu-central-1"}, "region", "AWS Panorama is available only in"),
    "unknown-framework": (
        {"model.framework": "ONNX"},
        "model.framework",
        "'MXNET', 'PYTORCH' or 'TENSORFLOW'",
    ),
    "neo-unsupported-version": (
        {"model.framework": "PYTORCH", "model.framework_version": "2.1"},
        "model.framework_version",
        "Neo compiles PYTORCH for the appliance only in versions 1.4, 1.5, 1.6, 1.7, 1.8",
    ),
    "nhwc-shape-for-pytorch": (
        {"model.framework": "PYTORCH", "model.input_shape": [1, 224, 224, 3]},
        "model.input_shape",
        "PYTORCH takes NCHW input [N, C, H, W] with C = 1 or 3 (this looks like NHWC)",
    ),
    "nchw-shape-for-tensorflow": (
        {
            "model.framework": "TENSORFLOW",
            "model.framework_version": "2.4",
            "model.input_shape": [1, 3, 224, 224],
        },
        "model.input_shape",
        "TENSORFLOW takes NHWC input [N, H, W, C]",
    ),
    "shape-wrong-rank": (
        {"model.input_shape": [3, 224, 224]},
        "model.input_shape",
        "must have 4 dimensions, [N, C, H, W] or [N, H, W, C]; got 3",
    ),
    "negative-dimension": ({"model.input_shape": [1, 3, -224, 224]}, "model.input_shape", "positive integer"),
    "duplicate-classes": ({"model.classes": ["cat", "cat"]}, "model.classes", "repeated: cat"),
    "builtin-object-detection": (
        {"training.algorithm": "object-detection"},
        "training.algorithm",
        "does not compile with SageMaker Neo for the appliance (operator _contrib_MultiBoxTarget)",
    ),
    "unknown-algorithm": (
        {"training.algorithm": "xgboost"},
        "training.algorithm",
        "supported built-in algorithms",
    ),
    "unknown-instance-family": (
        {"training.instance_type": "ml.zz9.xlarge"},
        "training.instance_type",
        "unknown instance type family 'zz9'",
    ),
    "unknown-instance-size": (
        {"training.instance_type": "ml.p3.mega"},
        "training.instance_type",
        "SageMaker does not train on this size of p3",
    ),
    "instance-type-not-ml": (
        {"training.instance_type": "p3.2xlarge"},
        "training.instance_type",
        "ml.<family>.<size>",
    ),
    "zero-instances": (
        {"training.instance_count": 0},
        "training.instance_count",
        "greater than or equal to 1",
    ),
    "spot-wait-shorter-than-runtime": (
        {"training.max_runtime_seconds": 7200, "training.max_wait_seconds": 3600},
        "training.max_wait_seconds",
        "max_wait_seconds >= max_runtime_seconds (7200)",
    ),
    "camera-password-in-config": (
        {"cameras.0.password": "hunter2"},
        "cameras[0]",
        "camera credentials never go in config files (password)",
    ),
    "typo-in-field-name": (
        {"training.instance_typ": "ml.p3.2xlarge"},
        "training.instance_typ",
        "unknown field; allowed here: mode, algorithm",
    ),
    "device-without-id-or-name": ({"devices": [{}]}, "devices[0]", "give exactly one of id, name or tags"),
    "device-with-name-and-tags": (
        {"devices": [{"name": "lobby", "tags": {"fleet": "stores"}}]},
        "devices[0]",
        "give exactly one of id, name or tags",
    ),
    "device-empty-tag-group": ({"devices": [{"tags": {}}]}, "devices[0].tags", "at least 1 item"),
    "device-tag-value-too-long": (
        {"devices": [{"tags": {"fleet": "v" * 257}}]},
        "devices[0].tags.fleet",
        "at most 256",
    ),
    "lock-lease-shorter-than-a-poll": (
        {"runs": {"poll_seconds": 600, "lock_lease_seconds": 1500}},
        "runs.lock_lease_seconds",
        "must be at least poll_seconds + 1200 (1800 s)",
    ),
    "batch-too-big-for-the-deploy-timeout": ({"runs": {"deploy_batch_size": 61}}, "runs.deploy_batch_size", "60"),
    "device-name-with-space": (
        {"devices": [{"name": "lobby device"}]},
        "devices[0].name",
        "must be letters, digits, - and _",
    ),
    "bad-email": ({"notification_email": "ops-at-example"}, "notification_email", "must be an e-mail address"),
    "both-compile-targets": (
        {"compilation": {"target_device": "jetson_xavier", "target_platform": {}}},
        "compilation",
        "either target_device or target_platform",
    ),
    "bucket-name-too-long": (
        {"project": "panorama-people-cnt", "environment": "production"},
        "project",
        "would be 76 characters; S3 allows at most 63 (shorten the project or environment name); with account or "
        "region unset, names are checked for the longest possible value",
    ),
    "builtin-classifier-needs-mxnet": (
        {"model.framework": "PYTORCH", "model.framework_version": "1.8"},
        "model.framework",
        "the built-in image-classification algorithm produces MXNet 1.8 models",
    ),
    "builtin-classifier-on-cpu": (
        {"training.instance_type": "ml.m5.xlarge"},
        "training.instance_type",
        "trains on GPU instances only",
    ),
    "num-classes-mismatch": (
        {"training.hyperparameters.num_classes": 3},
        "training.hyperparameters.num_classes",
        "must equal the number of model.classes (2)",
    ),
    "script-mode-missing-entry-point": (
        {"training.mode": "script", "training.algorithm": ...},
        "training.entry_point",
        "script mode needs an entry point",
    ),
    "script-mode-entry-point-not-found": (
        {"training.mode": "script", "training.algorithm": ..., "training.entry_point": "train/missing.py"},
        "training.entry_point",
        "must be an existing .py file",
    ),
    "duplicate-devices": (
        {"devices": [{"name": "a"}, {"name": "a"}]},
        "devices",
        "each entry must be unique",
    ),
    "too-many-cameras": ({"cameras": [{"name": f"c{i}"} for i in range(9)]}, "cameras", "at most 8 items"),
    # item 2: the built-in image-classification algorithm cannot run without num_classes
    "num-classes-missing": (
        {"training.hyperparameters.num_classes": ...},
        "training.hyperparameters.num_classes",
        "the built-in image-classification algorithm needs it: the number of model.classes (2)",
    ),
    # item 3: thresholds on the metric's scale, and no NaN or infinity in any number
    "accuracy-threshold-as-percent": (
        {"training.metric.threshold": 90},
        "training.metric.threshold",
        "validation:accuracy is a ratio, so the threshold must lie within 0 and 1: write 0.9 for 90 %",
    ),
    "accuracy-threshold-negative": (
        {"training.metric.threshold": -0.5},
        "training.metric.threshold",
        "must lie within 0 and 1",
    ),
    "metric-threshold-nan": ({"training.metric.threshold": NAN}, "training.metric.threshold", "finite number"),
    "metric-threshold-infinite": (
        {"training.metric.threshold": -INF, "training.metric.goal": "minimize"},
        "training.metric.threshold",
        "must be a finite number (not .nan or .inf)",
    ),
    "application-threshold-nan": ({"application": {"threshold": NAN}}, "application.threshold", "finite number"),
    "metrics-interval-infinite": (
        {"application": {"metrics_interval_seconds": INF}},
        "application.metrics_interval_seconds",
        "finite number",
    ),
    "hyperparameter-nan": (
        {"training.hyperparameters.learning_rate": NAN},
        "training.hyperparameters.learning_rate",
        "must be a finite number (not .nan or .inf)",
    ),
    # item 4: the gate reads a metric the built-in algorithm emits
    "builtin-metric-never-emitted": (
        {"training.metric.name": "validation:mAP"},
        "training.metric.name",
        "the built-in image-classification algorithm emits only validation:accuracy, train:accuracy",
    ),
    "builtin-metric-misspelt": (
        {"training.metric.name": "validation_accuracy"},
        "training.metric.name",
        "emits only validation:accuracy",
    ),
    "builtin-with-metric-definitions": (
        {"training.metric_definitions": [{"name": "validation:accuracy", "regex": "acc=([0-9.]+)"}]},
        "training.metric_definitions",
        "only script mode takes metric definitions",
    ),
    # item 5: schedules EventBridge refuses (the whole table is in tests/test_config_schedule.py)
    "schedule-rate-one-plural": (
        {"runs.schedule": "rate(1 hours)"},
        "runs.schedule",
        "a rate of 1 takes the singular unit: rate(1 hour)",
    ),
    "schedule-rate-zero": ({"runs.schedule": "rate(0 minutes)"}, "runs.schedule", "must be at least 1"),
    "schedule-both-days": (
        {"runs.schedule": "cron(0 3 * * MON *)"},
        "runs.schedule",
        "exactly one of day-of-month and day-of-week must be ?",
    ),
    "schedule-minute-out-of-range": (
        {"runs.schedule": "cron(60 3 ? * MON *)"},
        "runs.schedule",
        "minutes field '60': 60 is out of range (0-59)",
    ),
    # item 6: class names the device would split or strip
    "class-name-with-comma": (
        {"model.classes": ["empty", "person,adult"], "training.hyperparameters.num_classes": 2},
        "model.classes",
        "must not contain a comma: the device receives them comma-joined and would split 'person,adult'",
    ),
    "class-name-with-leading-space": (
        {"model.classes": ["empty", " person"]},
        "model.classes",
        "must not start or end with whitespace",
    ),
    "class-of-interest-with-comma": (
        {"application": {"classes_of_interest": ["empty,person"]}},
        "application.classes_of_interest",
        "must not contain a comma",
    ),
    "class-of-interest-with-trailing-space": (
        {"application": {"classes_of_interest": ["person "]}},
        "application.classes_of_interest",
        "must not start or end with whitespace",
    ),
    # item 8: Unicode digits are digits to \d, not to AWS
    "account-arabic-indic-digits": (
        {"account": "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662"},
        "account",
        "must be a 12-digit AWS account id of ASCII digits 0-9",
    ),
    "account-fullwidth-digits": ({"account": "１２３４５６７８９０１２"}, "account", "12-digit AWS account id"),
    # a builtin run takes no script settings
    "builtin-with-source-dir": (
        {"training.source_dir": "tests/fixtures"},
        "training.source_dir",
        "only script mode takes a source_dir",
    ),
}

#: Script mode (tests/configs/script.yaml): entry points, source directories and metric definitions.
_FIXTURE = "tests/fixtures/train_detector.py"
SCRIPT_BAD_CONFIGS: dict[str, tuple[dict[str, Any], str, str]] = {
    # item 7: the training code comes from inside the repository
    "entry-point-absolute": (
        {"training.entry_point": str(ROOT / _FIXTURE)},
        "training.entry_point",
        "must be relative to the project root, not an absolute path",
    ),
    "entry-point-climbs-out": (
        {"training.entry_point": f"../{ROOT.name}/{_FIXTURE}"},
        "training.entry_point",
        "must stay inside the project: no .. in the path",
    ),
    "entry-point-climbs-out-of-source-dir": (
        {"training.source_dir": "tests/configs", "training.entry_point": "../fixtures/train_detector.py"},
        "training.entry_point",
        "no .. in the path",
    ),
    "entry-point-windows-path": (
        {"training.entry_point": "tests\\fixtures\\train_detector.py"},
        "training.entry_point",
        "use / as the path separator",
    ),
    "source-dir-absolute": (
        {"training.source_dir": str(ROOT / "tests" / "fixtures"), "training.entry_point": "train_detector.py"},
        "training.source_dir",
        "not an absolute path",
    ),
    "source-dir-climbs-out": (
        {"training.source_dir": f"../{ROOT.name}/tests/fixtures", "training.entry_point": "train_detector.py"},
        "training.source_dir",
        "no .. in the path",
    ),
    "source-dir-missing": (
        {"training.source_dir": "no_such_source_dir/", "training.entry_point": "train.py"},
        "training.source_dir",
        "must be a directory",
    ),
    # item 4: metric definitions SageMaker would refuse, or that do not define the gate's metric
    "metric-definition-without-group": (
        {"training.metric_definitions": [{"name": "validation:mAP", "regex": "mAP=[0-9.]+"}]},
        "training.metric_definitions[0].regex",
        "must have exactly one capture group, around the value (it has 0)",
    ),
    "metric-definition-two-groups": (
        {"training.metric_definitions": [{"name": "validation:mAP", "regex": "(mAP)=([0-9.]+)"}]},
        "training.metric_definitions[0].regex",
        "(it has 2)",
    ),
    "metric-definition-bad-regex": (
        {"training.metric_definitions": [{"name": "validation:mAP", "regex": "mAP=([0-9.]+"}]},
        "training.metric_definitions[0].regex",
        "is not a valid regular expression: missing ), unterminated subpattern",
    ),
    "metric-definition-regex-too-long": (
        {"training.metric_definitions": [{"name": "validation:mAP", "regex": "(x)" + "y" * 498}]},
        "training.metric_definitions[0].regex",
        "at most 500 characters",
    ),
    "metric-definition-empty-name": (
        {"training.metric_definitions": [{"name": "", "regex": "mAP=([0-9.]+)"}]},
        "training.metric_definitions[0].name",
        "at least 1 character",
    ),
    "metric-definition-name-too-long": (
        {"training.metric_definitions": [{"name": "m" * 256, "regex": "mAP=([0-9.]+)"}]},
        "training.metric_definitions[0].name",
        "at most 255 characters",
    ),
    "metric-definitions-repeat-a-name": (
        {
            "training.metric_definitions": [
                {"name": "validation:mAP", "regex": "mAP=([0-9.]+)"},
                {"name": "validation:mAP", "regex": "map ([0-9.]+)"},
            ]
        },
        "training.metric_definitions",
        "metric names must be unique; repeated: validation:mAP",
    ),
    "gate-metric-not-defined": (
        {"training.metric_definitions": [{"name": "train:loss", "regex": "loss=([0-9.]+)"}]},
        "training.metric.name",
        "must be one of training.metric_definitions (train:loss): SageMaker reports only those",
    ),
    # item 3 in script mode: mAP is a ratio too
    "map-threshold-as-percent": (
        {"training.metric.threshold": 50},
        "training.metric.threshold",
        "validation:mAP is a ratio, so the threshold must lie within 0 and 1: write 0.5 for 50 %",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_rejected_with_a_clear_message(case: str) -> None:
    changes, field, rule = BAD_CONFIGS[case]
    problems = _problems(_with(changes))
    assert len(problems) == 1, f"one fault, one message: {problems}"
    assert problems[0].startswith(f"{field} = ") and rule in problems[0], problems[0]


@pytest.mark.parametrize("case", sorted(SCRIPT_BAD_CONFIGS))
def test_bad_script_mode_config_is_rejected_with_a_clear_message(case: str) -> None:
    changes, field, rule = SCRIPT_BAD_CONFIGS[case]
    problems = _problems(_with(changes, SCRIPT))
    assert len(problems) == 1, f"one fault, one message: {problems}"
    assert problems[0].startswith(f"{field} = ") and rule in problems[0], problems[0]


def test_num_training_samples_is_an_optional_fallback() -> None:
    """The pipeline counts a data set's records at run time; a configured value is kept as a fallback."""
    without = parse_config(_with({"training.hyperparameters.num_training_samples": ...}), base_dir=ROOT)
    assert "num_training_samples" not in without.training.hyperparameters
    given = parse_config(DEV, base_dir=ROOT)
    assert given.training.hyperparameters["num_training_samples"] == 480


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        ("validation:accuracy", 1),
        ("train:accuracy:epoch", 1),
        ("val_acc", 1),
        ("top1_acc", 1),
        ("valAccuracy", 1),
        ("validation:mAP", 1),
        ("mAP50", 1),
        ("bbox/AP75", 1),
        ("test/f1", 1),
        ("macro_f1", 1),
        ("mean_iou", 1),
        ("mIoU", 1),
        ("roc_auc", 1),
        ("precision", 1),
        ("recall_at_5", 1),
        ("dice_score", 1),
        ("val_acc_percent", 100),
        ("accuracy_pct", 100),
        ("validation:loss", None),
        ("dice_loss", None),
        ("validation:rmse", None),
        ("throughput", None),
        ("mapping_error", None),  # 'map' is a word of its own only
        ("capacity", None),
    ],
)
def test_which_metrics_are_ratios(name: str, scale: float | None) -> None:
    from panopipe.config.training_schema import metric_scale

    assert metric_scale(name) == scale


@pytest.mark.parametrize(
    ("name", "threshold", "goal"),
    [
        ("validation:loss", 2.5, "minimize"),  # not a ratio: any finite value
        ("val_acc_percent", 90, "maximize"),  # a percentage: 0-100
        ("validation:mAP", 0, "maximize"),
        ("validation:mAP", 1, "maximize"),
    ],
)
def test_thresholds_on_the_metric_scale_are_accepted(name: str, threshold: float, goal: str) -> None:
    data = _with({"training.metric": {"name": name, "threshold": threshold, "goal": goal}}, SCRIPT)
    assert parse_config(data, base_dir=ROOT).training.metric.threshold == threshold


def test_percentage_metric_threshold_above_100_is_refused() -> None:
    data = _with({"training.metric": {"name": "val_acc_percent", "threshold": 900}}, SCRIPT)
    assert _problems(data) == [
        "training.metric.threshold = 900: val_acc_percent is a percentage, so the threshold must lie within 0 and 100"
    ]


def test_metric_definitions_define_the_gate_and_reach_the_handlers() -> None:
    from lambda_handlers.settings import StepSettings, parse
    from panopipe.config.step_settings import step_settings_json

    definitions = [
        {"name": "validation:mAP", "regex": r"mAP: (?P<value>[0-9.]+)"},
        {"name": "train:loss", "regex": r"loss=([0-9.eE+-]+)(?:\s|$)"},
    ]
    config = parse_config(_with({"training.metric_definitions": definitions}, SCRIPT), base_dir=ROOT)
    assert [(d.name, d.regex) for d in config.training.metric_definitions] == [
        (d["name"], d["regex"]) for d in definitions
    ]
    parsed = parse(StepSettings, json.loads(step_settings_json(config)))
    assert [(d.name, d.regex) for d in parsed.training.metric_definitions] == [
        (d["name"], d["regex"]) for d in definitions
    ]
    omitted = parse_config(SCRIPT, base_dir=ROOT)
    assert omitted.training.metric_definitions == ()


@pytest.mark.parametrize(
    "changes",
    [
        {"training.source_dir": "tests/fixtures", "training.entry_point": "train_detector.py"},
        {"training.source_dir": "tests/fixtures/", "training.entry_point": "./train_detector.py"},
        {"training.entry_point": "./tests/fixtures/train_detector.py"},
    ],
)
def test_script_paths_inside_the_project_are_accepted(changes: dict[str, Any]) -> None:
    assert parse_config(_with(changes, SCRIPT), base_dir=ROOT).training.entry_point == changes["training.entry_point"]


def test_entry_point_linked_out_of_the_project_is_refused(tmp_path: Path) -> None:
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "train.py").write_text("print('validation:mAP=1')\n")
    (project / "train.py").symlink_to(outside / "train.py")
    (project / "code").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError) as caught:
        parse_config(_with({"training.entry_point": "train.py"}, SCRIPT), "config/bad.yaml", base_dir=project)
    assert [str(p) for p in caught.value.problems] == [
        f"training.entry_point = 'train.py': resolves outside the project ({outside / 'train.py'})"
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config(
            _with({"training.source_dir": "code", "training.entry_point": "train.py"}, SCRIPT),
            "config/bad.yaml",
            base_dir=project,
        )
    assert [str(p) for p in caught.value.problems] == [
        f"training.source_dir = 'code': resolves outside the project ({outside})"
    ]


def test_class_names_with_inner_spaces_are_accepted() -> None:
    config = parse_config(
        _with(
            {"model.classes": ["empty", "person with bag"], "application": {"classes_of_interest": ["person with bag"]}}
        ),
        base_dir=ROOT,
    )
    assert config.model.classes == ("empty", "person with bag")


@pytest.mark.parametrize(
    "cameras",
    [
        [{"name": "cam1", "password": "S3cr3t!"}],
        [{"name": "cam1", "username": "admin", "password": "S3cr3t!"}],
        [{"name": "cam1", "stream": "rtsp://admin:S3cr3t!@10.0.0.5/live"}],
        [{"name": "cam1", "secret_name": "rtsp://admin:S3cr3t!@10.0.0.5/live"}],
    ],
)
def test_credentials_in_config_never_appear_in_the_error(cameras: list[dict[str, str]]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_with({"cameras": cameras}), "config/bad.yaml", base_dir=ROOT)
    assert "S3cr3t" not in str(caught.value)
    assert "<redacted>" in str(caught.value)


def test_only_a_platform_replaces_the_default_target_device() -> None:
    config = parse_config(_with({"compilation": {"target_platform": {}}}), base_dir=ROOT)
    assert config.compilation.target_device is None
    assert config.compilation.target_platform is not None
    assert config.compilation.target_platform.compiler_options["gpu-code"] == "sm_72"


def test_mappings_in_the_config_are_read_only() -> None:
    config = parse_config(DEV, base_dir=ROOT)
    with pytest.raises(TypeError):
        config.training.hyperparameters["epochs"] = 999  # type: ignore[index]


def test_message_shows_the_value() -> None:
    (problem,) = _problems(_with({"training.instance_type": "ml.zz9.xlarge"}))
    assert problem.startswith("training.instance_type = 'ml.zz9.xlarge': unknown instance type family 'zz9'")


def test_every_field_problem_is_reported_at_once() -> None:
    problems = _problems(_with({"project": "Bad", "region": "mars-1", "training.instance_count": 0}))
    assert [p.split(" = ")[0] for p in problems] == ["project", "region", "training.instance_count"]


def test_missing_value_is_shown_as_missing() -> None:
    (problem,) = _problems(_with({"model": ...}))
    assert problem == "model = <missing>: required field is missing"


def test_not_a_mapping() -> None:
    assert _problems(["a", "list"]) == ["<root> = ['a', 'list']: the file must hold a YAML mapping"]


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"(?s)invalid configuration .*nope\.yaml .*cannot be read: No such file"):
        load_config(missing)


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("project: panopipe\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"<file> = 'line 3, column 1': is not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("name", ["config/dev.yaml", "config/example.yaml", "tests/configs/script.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_config(ROOT / name, base_dir=ROOT)
    assert isinstance(config, EnvironmentConfig)


def test_config_is_frozen() -> None:
    config = parse_config(DEV, base_dir=ROOT)
    with pytest.raises(Exception, match="frozen"):
        config.project = "other"


def test_defaults() -> None:
    config = parse_config(DEV, base_dir=ROOT)
    assert config.protect_stateful is False  # dev
    assert parse_config(_with({"environment": "qa"}), base_dir=ROOT).protect_stateful is True
    assert parse_config(_with({"termination_protection": True}), base_dir=ROOT).protect_stateful is True
    assert config.training.effective_max_wait_seconds == 7200  # spot: twice the 3600 s runtime
    assert parse_config(_with({"training.spot": False}), base_dir=ROOT).training.effective_max_wait_seconds is None
    assert config.compilation.target_device == "jetson_xavier"
    assert config.storage.noncurrent_version_days == 90
    assert config.model.precision == "FP16"


def test_example_documents_every_field() -> None:
    """config/example.yaml is the reference: it must mention every field the model accepts."""
    from panopipe.config.problems import allowed_fields

    text = (ROOT / "config" / "example.yaml").read_text()
    for fields in allowed_fields().values():
        for field in fields:
            assert re.search(rf"^\s*(#\s*)?(-\s*)?{field}:|#.*\b{field}:", text, re.M), field


def test_overrides_set_fields_on_top_of_the_file_and_follow_its_rules() -> None:
    path = ROOT / "config" / "dev.yaml"
    assert load_config(path, base_dir=ROOT, overrides={"runs.poll_seconds": 2}).runs.poll_seconds == 2
    with pytest.raises(ConfigError) as caught:
        load_config(path, base_dir=ROOT, overrides={"runs.poll_seconds": 0})
    assert [str(p) for p in caught.value.problems] == [
        "runs.poll_seconds = 0: Input should be greater than or equal to 1"
    ]
    with pytest.raises(ConfigError, match="instance_type is not a section"):
        load_config(path, base_dir=ROOT, overrides={"training.instance_type.x": 1})


def test_the_renamed_runs_section_is_named_when_the_old_name_is_used() -> None:
    data = copy.deepcopy(DEV)
    data["pipeline"] = {"poll_seconds": 5}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=ROOT)
    assert [str(p) for p in caught.value.problems] == [
        "pipeline = '<section>': this section is now called runs: (same fields)"
    ]


def test_prefix_and_settings_sections_are_computed_from_the_config() -> None:
    config = parse_config(DEV, base_dir=ROOT)
    assert config.prefix == "panopipe-dev"
    dumped = config.model_dump(mode="json")
    assert dumped["prefix"] == "panopipe-dev" and dumped["training_timeout_seconds"] == config.training_timeout_seconds
    assert dumped["training"]["hyperparameters"]["epochs"] == 10, "a read-only mapping dumps as a plain object"


@pytest.mark.parametrize(
    ("file", "overrides", "scaling"),
    [
        ("config/dev.yaml", {}, "raw"),  # the built-in algorithm trains on raw pixels (bn_data normalizes)
        ("tests/configs/script.yaml", {}, "imagenet"),
        ("config/dev.yaml", {"model.input_scaling": "imagenet"}, "imagenet"),
    ],
)
def test_the_application_scales_pixels_as_the_models_training_did(
    file: str, overrides: dict[str, Any], scaling: str
) -> None:
    from panopipe.config.panorama_spec import application_spec

    config = load_config(ROOT / file, base_dir=ROOT, overrides=overrides)
    assert config.input_scaling == scaling
    (parameter,) = [p for p in application_spec(config).parameters if p.name == "input_scaling"]
    assert parameter.value == scaling and not parameter.overridable


def test_an_unknown_input_scaling_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(ROOT / "config/dev.yaml", base_dir=ROOT, overrides={"model.input_scaling": "zscore"})
    assert "model.input_scaling = 'zscore'" in str(error.value)
