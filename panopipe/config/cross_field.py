"""Rules that span sections, checked once every field is valid on its own.

Each returns :class:`Problem` entries, so a file with several mistakes reports them all at once.
"""

from __future__ import annotations

from pathlib import Path

from panopipe.config.problems import MISSING, Problem
from panopipe.config.schema import EnvironmentConfig, Framework
from panopipe.config.training_schema import BUILTIN_METRICS, GPU_FAMILY_PREFIXES, TrainingConfig, instance_family
from panopipe.naming import BUCKET_PURPOSES, BucketNameError


def cross_field_problems(config: EnvironmentConfig, base_dir: Path) -> list[Problem]:
    """Rules that span sections; run once every field is valid on its own."""
    problems: list[Problem] = []
    training, model = config.training, config.model
    if training.mode == "builtin":
        if training.algorithm is None:
            problems.append(
                Problem("training.algorithm", None, "builtin mode needs an algorithm, e.g. image-classification")
            )
        if training.entry_point is not None:
            problems.append(
                Problem("training.entry_point", training.entry_point, "only script mode takes an entry point")
            )
        if training.source_dir is not None:
            problems.append(Problem("training.source_dir", training.source_dir, "only script mode takes a source_dir"))
        if training.metric_definitions:
            problems.append(
                Problem(
                    "training.metric_definitions",
                    [d.name for d in training.metric_definitions],
                    "only script mode takes metric definitions (a built-in algorithm emits its own metrics)",
                )
            )
        known_metrics = BUILTIN_METRICS.get(training.algorithm or "")
        if known_metrics and training.metric.name not in known_metrics:
            problems.append(
                Problem(
                    "training.metric.name",
                    training.metric.name,
                    f"the built-in {training.algorithm} algorithm emits only {', '.join(known_metrics)}",
                )
            )
        if training.algorithm == "image-classification":
            if (model.framework, model.framework_version) != (Framework.MXNET, "1.8"):
                problems.append(
                    Problem(
                        "model.framework",
                        model.framework.value,
                        "the built-in image-classification algorithm produces MXNet 1.8 models; "
                        "set framework: MXNET and framework_version: '1.8'",
                    )
                )
            if model.task != "image_classification":
                problems.append(
                    Problem("model.task", model.task, "the image-classification algorithm trains a classifier")
                )
            if not instance_family(training.instance_type).startswith(GPU_FAMILY_PREFIXES):
                problems.append(
                    Problem(
                        "training.instance_type",
                        training.instance_type,
                        "the built-in image-classification algorithm trains on GPU instances only (ml.p*, ml.g*)",
                    )
                )
            declared = training.hyperparameters.get("num_classes")
            if declared is None:
                problems.append(
                    Problem(
                        "training.hyperparameters.num_classes",
                        MISSING,
                        f"the built-in image-classification algorithm needs it: the number of model.classes "
                        f"({len(model.classes)})",
                    )
                )
            elif str(declared) != str(len(model.classes)):
                problems.append(
                    Problem(
                        "training.hyperparameters.num_classes",
                        declared,
                        f"must equal the number of model.classes ({len(model.classes)})",
                    )
                )
    else:
        if training.algorithm is not None:
            problems.append(
                Problem("training.algorithm", training.algorithm, "script mode takes entry_point, not algorithm")
            )
        problems.extend(_script_problems(training, base_dir))
    unknown = sorted(set(config.application.classes_of_interest) - set(model.classes))
    if unknown:
        problems.append(
            Problem(
                "application.classes_of_interest", list(unknown), f"not in model.classes ({', '.join(model.classes)})"
            )
        )
    if not training.spot and training.max_wait_seconds is not None:
        problems.append(
            Problem("training.max_wait_seconds", training.max_wait_seconds, "applies only when spot is true")
        )
    for purpose in BUCKET_PURPOSES:
        try:
            config.bucket_name(purpose)
        except BucketNameError as err:
            hint = ""
            if config.region is None or config.account is None:
                hint = (
                    "; with account or region unset, names are checked for the longest possible "
                    "value (12 digits, ap-southeast-1): set them, or shorten the names"
                )
            problems.append(Problem("project", config.project, f"{err}{hint}"))
            break
    problems.extend(_timeout_problems(config))
    for field, items in (
        ("devices", [d.key for d in config.devices]),
        ("cameras", [c.name for c in config.cameras]),
    ):
        repeated = sorted({k for k in items if items.count(k) > 1})
        if repeated:
            problems.append(Problem(field, repeated, "each entry must be unique"))
    return problems


def _script_problems(training: TrainingConfig, base_dir: Path) -> list[Problem]:
    """Script mode: the entry point exists inside the project; the gate's metric is one it reports."""
    problems: list[Problem] = []
    defined = [d.name for d in training.metric_definitions]
    if defined and training.metric.name not in defined:
        problems.append(
            Problem(
                "training.metric.name",
                training.metric.name,
                f"must be one of training.metric_definitions ({', '.join(defined)}): SageMaker reports only those",
            )
        )
    if training.entry_point is None:
        problems.append(
            Problem("training.entry_point", None, "script mode needs an entry point (a .py file in the repo)")
        )
        return problems
    root = base_dir.resolve()
    source = base_dir / (training.source_dir or ".")
    if training.source_dir is not None:
        if not source.is_dir():
            return [*problems, Problem("training.source_dir", training.source_dir, f"must be a directory ({source})")]
        if not source.resolve().is_relative_to(root):
            return [
                *problems,
                Problem(
                    "training.source_dir", training.source_dir, f"resolves outside the project ({source.resolve()})"
                ),
            ]
    script = source / training.entry_point
    if not training.entry_point.endswith(".py") or not script.is_file():
        problems.append(
            Problem("training.entry_point", training.entry_point, f"must be an existing .py file (looked for {script})")
        )
    elif not script.resolve().is_relative_to(root):
        problems.append(
            Problem("training.entry_point", training.entry_point, f"resolves outside the project ({script.resolve()})")
        )
    return problems


#: The longest locked step (RegisterPackage: 900 s + 30 s slack) and its retries' backoff (2+4+…+60 s),
#: between two renewals of the lease.
LEASE_MARGIN_SECONDS = 1200


def _timeout_problems(config: EnvironmentConfig) -> list[Problem]:
    """Wait-loop timeouts must outlast the jobs they wait for, and the run must outlast them all."""
    problems: list[Problem] = []
    runs, training = config.runs, config.training
    job_limit = training.effective_max_wait_seconds or training.max_runtime_seconds
    if runs.training_timeout_seconds is not None and runs.training_timeout_seconds < job_limit:
        problems.append(
            Problem(
                "runs.training_timeout_seconds",
                runs.training_timeout_seconds,
                f"must be at least the training job's own limit ({job_limit} s: max_wait_seconds with spot, "
                "else max_runtime_seconds)",
            )
        )
    if runs.compilation_timeout_seconds < config.compilation.max_runtime_seconds:
        problems.append(
            Problem(
                "runs.compilation_timeout_seconds",
                runs.compilation_timeout_seconds,
                f"must be at least compilation.max_runtime_seconds ({config.compilation.max_runtime_seconds})",
            )
        )
    if runs.lock_lease_seconds < runs.poll_seconds + LEASE_MARGIN_SECONDS:
        problems.append(
            Problem(
                "runs.lock_lease_seconds",
                runs.lock_lease_seconds,
                f"must be at least poll_seconds + {LEASE_MARGIN_SECONDS} "
                f"({runs.poll_seconds + LEASE_MARGIN_SECONDS} s): the lease is renewed by every locked step, "
                "and must outlast one wait plus one step with its retries",
            )
        )
    if runs.run_timeout_seconds is not None and runs.run_timeout_seconds < config.minimum_run_seconds:
        problems.append(
            Problem(
                "runs.run_timeout_seconds",
                runs.run_timeout_seconds,
                f"must cover every wait loop at its timeout, the deployment twice for a rollback, the lock wait "
                f"({config.minimum_run_seconds} s)",
            )
        )
    return problems
