"""``panopipe``: validate a config, start and watch pipeline runs, run the whole thing locally.

The same commands work against a real account (the usual AWS credential chain) and against the
local emulator (``panopipe local up`` leaves ``AWS_ENDPOINT_URL`` hints in ``.panopipe/local.json``
and every command picks it up while it runs). Heavy modules (the config's pydantic models, boto3)
are imported inside the commands, so ``--help`` stays instant.

Files are found from any folder: a relative ``--config`` (default ``config/dev.yaml``) or assembly
path is taken from the current folder if it is there, else from the project root (the checkout
holding this package), and the paths inside a config (the script-mode entry point) from the project
root, as ``cdk synth`` does. An expected failure prints one ``error:`` line on stderr and exits with
the code that says what kind it is (:mod:`panopipe.exit_codes`, listed by ``--help``).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from panopipe import exit_codes
from panopipe.project import ROOT, locate, searched

if TYPE_CHECKING:
    from panopipe.config import EnvironmentConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Validate a config; start, watch and list pipeline runs; run everything locally.",
    epilog=exit_codes.HELP,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

#: The default config (``panopipe.config.DEFAULT_CONFIG_PATH``; not imported: that loads pydantic).
DEFAULT_CONFIG = Path("config/dev.yaml")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", help="the environment's config file (from the current folder, else the project root)"
    ),
]


def _fail(message: str, code: int) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _config_path(path: Path) -> Path:
    """The config file ``path`` names, from the current folder or the project root; exit 2 if none."""
    found = locate(path)
    if not found.exists():
        _fail(f"no config file {searched(path)}: pass --config PATH", exit_codes.USAGE)
    return found


def _config(path: Path) -> EnvironmentConfig:
    """The validated config at ``path`` (resolved by :func:`_config_path`); exit 2 if it is not one."""
    from panopipe.config import ConfigError, load_config

    try:
        return load_config(path, base_dir=ROOT)
    except ConfigError as error:
        _fail(str(error), exit_codes.USAGE)
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        _fail(
            f"{path}: not a text file (byte 0x{byte} at offset {error.start} is not UTF-8): a config is a YAML file",
            exit_codes.USAGE,
        )
    except RecursionError:
        _fail(f"{path}: the YAML nests too deeply (or refers to itself)", exit_codes.USAGE)


@app.command(epilog=exit_codes.HELP)
def validate(
    config: Annotated[
        Path, typer.Argument(help="config file (from the current folder, else the project root)")
    ] = DEFAULT_CONFIG,
) -> None:
    """Check a config file and the Panorama manifests it generates (graph, overrides, descriptors)."""
    path = _config_path(config)
    loaded = _config(path)
    from panopipe.config.panorama_spec import application_spec
    from panorama_app.manifest import documents
    from panorama_app.manifest.rules import ManifestError
    from panorama_app.manifest.validation import payload, validate_descriptor

    spec = application_spec(loaded)
    try:
        graph = documents.graph(spec, "123456789012")
        documents.camera_overrides(spec, "123456789012", graph)
        validate_descriptor(documents.model_descriptor(spec))
    except ManifestError as error:
        _fail(f"{path}: the generated manifests are invalid:\n{error}", exit_codes.USAGE)
    groups = sum(device.tags is not None for device in loaded.devices)
    devices = f"{len(loaded.devices) - groups} device(s)" + (f" + {groups} tag group(s)" if groups else "")
    console.print(
        f"{path}: valid ({loaded.project}-{loaded.environment}, {devices}, "
        f"{len(loaded.cameras)} camera(s); graph.json {len(payload(graph))} of 51200 characters)",
        highlight=False,
    )


@app.command(epilog=exit_codes.HELP)
def prepare(
    data: Annotated[Path, typer.Argument(help="raw images: <class>/ folders of .jpg/.png, or a manifest's folder")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where train/, validation/ and report.json go")],
    config: ConfigOption = DEFAULT_CONFIG,
    manifest: Annotated[
        str | None, typer.Option("--manifest", help="a Ground Truth manifest in DATA (source-refs relative to it)")
    ] = None,
) -> None:
    """Prepare a raw image data set here, as the pipeline's preparation step does (the same script)."""
    import contextlib
    import importlib.util
    import io
    import json
    import sys

    from lambda_handlers.preparation import script_arguments
    from lambda_handlers.settings import StepSettings, parse
    from panopipe.config.step_settings import step_settings_json

    loaded = _config(_config_path(config))
    if not data.is_dir():
        _fail(f"{data}: no such folder", exit_codes.USAGE)
    settings = parse(StepSettings, json.loads(step_settings_json(loaded)))
    source: Any = {"kind": "dataset", "bucket": "", "prefix": "", "prepare": True}
    arguments = script_arguments(settings, source)
    arguments[arguments.index("--input") + 1], arguments[arguments.index("--output") + 1] = str(data), str(out)
    if manifest:  # source-refs that are not s3:// URIs are paths relative to the manifest
        arguments += ["--manifest", manifest, "--label-attribute", loaded.training.label_attribute]
    spec = importlib.util.spec_from_file_location("panopipe_prepare", ROOT / "processing" / "prepare.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclasses look their module up
    spec.loader.exec_module(script)
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stderr(io.StringIO()):  # reported below
        code = script.main([*arguments, "--message-file", str(Path(scratch) / "message")])
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    table = Table("class", "images", "train", "validation", title=f"{data} → {out} ({report['format']})")
    for name, before in report["images_before"].items():
        after = report["images_after"].get(name, {})
        table.add_row(name, str(before), str(after.get("train", "-")), str(after.get("validation", "-")))
    console.print(table)
    console.print(
        f"imbalance (largest/smallest class): {report['imbalance_ratio']}; rejected files: {len(report['rejected'])}; "
        f"{report['images_per_second']} images/s",
        highlight=False,
    )
    for rejected in report["rejected"][:10]:
        console.print(f"  rejected {rejected['file']}: {rejected['reason']}", highlight=False, markup=False)
    if code != 0:
        _fail(f"data set rejected: {report['failure']}", exit_codes.USAGE)


@app.command(epilog=exit_codes.HELP)
def summary(
    assembly: Annotated[
        Path, typer.Argument(help="cloud assembly directory (from the current folder, else the project root)")
    ] = Path("cdk.out"),
) -> None:
    """List the stacks and resources that `cdk deploy '**'` would create from a synthesized app."""
    from panopipe.summary import render, summarize

    found = locate(assembly)
    if not (found / "manifest.json").is_file():
        _fail(f"no manifest.json in {searched(assembly)}: synthesize first (make synth)", exit_codes.USAGE)
    console.print(render(summarize(found)), highlight=False)
    console.print(
        "\nNothing was deployed. To deploy to an AWS account: npx cdk bootstrap && "
        "npx cdk deploy '**' -c config=<your config>",
        highlight=False,
    )


@app.command(epilog=exit_codes.HELP)
def run(
    config: ConfigOption = DEFAULT_CONFIG,
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="local folder to upload and train on: train/ and validation/ (prepared), or a folder of images per"
            " class (raw: the run prepares it); default: the generated sample"
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="data set folder name under runs.dataset_prefix (letters, digits, . _ -; ≤ 100; default: sample)"
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="s3:// URI of a model trained elsewhere (skip training; no data set)")
    ] = None,
    training_job: Annotated[
        str | None, typer.Option(help="a Completed SageMaker training job (skip training; no data set)")
    ] = None,
    watch_run: Annotated[bool, typer.Option("--watch/--no-watch", help="follow the run until it ends")] = True,
) -> None:
    """Start a run: upload a data set (default: the generated sample) or name a model or training job."""
    from panopipe import runs

    _check_run_options(dataset, name, model, training_job)
    loaded = _config(_config_path(config))
    with _local_endpoint():
        try:
            target = runs.find_target(loaded)
            if model or training_job:
                source = {"model": model} if model else {"training_job": training_job}
                arn = runs.start(target, source)
            else:
                folder, prefix, name = dataset or _sample_dataset(), loaded.runs.dataset_prefix, name or "sample"
                version = runs.upload_dataset(target, folder, name, prefix)
                run_name = runs.dataset_run_name(target, name, version, prefix)
                arn = runs.start(target, {"dataset": f"s3://{target.data_bucket}/{prefix}{name}/"}, run_name)
        except runs.RunError as error:
            _fail(str(error), error.exit_code)
        console.print(f"started {arn}", highlight=False)
        if watch_run:
            _watch(arn)


def _check_run_options(dataset: Path | None, name: str | None, model: str | None, training_job: str | None) -> None:
    """Refuse conflicting or malformed ``run`` options before anything is read or uploaded (exit 2)."""
    from panopipe import runs

    if model is not None and training_job is not None:
        _fail("--model and --training-job exclude each other: a run starts from one source", exit_codes.USAGE)
    given = "--model" if model is not None else "--training-job" if training_job is not None else None
    if given and (dataset is not None or name is not None):
        data_options = " and ".join(o for o, v in (("--dataset", dataset), ("--name", name)) if v is not None)
        _fail(f"{given} skips the data set: it excludes {data_options}", exit_codes.USAGE)
    if model is not None and not runs.MODEL_URI.fullmatch(model):
        _fail(f"--model {model!r}: must be an s3:// URI (s3://<bucket>/<key>, bucket in lower case)", exit_codes.USAGE)
    if training_job is not None and not runs.TRAINING_JOB.fullmatch(training_job):
        _fail(
            f"--training-job {training_job!r}: must be a SageMaker training job name (letters, digits, -; ≤ 63)",
            exit_codes.USAGE,
        )
    if name is not None and (problem := runs.dataset_name_problem(name)):
        _fail(f"--name {name!r}: {problem}", exit_codes.USAGE)
    if dataset is not None and not dataset.is_dir():
        _fail(f"--dataset {dataset}: no such folder", exit_codes.USAGE)
    if dataset is not None and (problem := runs.dataset_folder_problem(dataset)):
        _fail(f"--dataset {dataset}: {problem}", exit_codes.USAGE)


@app.command(epilog=exit_codes.HELP)
def watch(
    execution: Annotated[
        str | None, typer.Argument(help="execution ARN, or run name of the config's pipeline (default: the newest run)")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Follow a run step by step until it ends; exit 1 if it failed."""
    from panopipe import runs

    if execution is not None and execution.startswith("arn:"):
        if not runs.EXECUTION_ARN.fullmatch(execution):
            _fail(
                f"{execution!r} is not an execution ARN (arn:aws:states:<region>:<account>:execution:<machine>:<run>)",
                exit_codes.USAGE,
            )
        with _local_endpoint():  # the ARN says everything: no config needed
            _watch(execution)
        return
    if execution is not None and not runs.RUN_NAME.fullmatch(execution):
        _fail(f"{execution!r} is neither an execution ARN nor a run name", exit_codes.USAGE)
    loaded = _config(_config_path(config))
    with _local_endpoint():
        try:
            target = runs.find_target(loaded)
            if execution is None:
                newest = runs.recent_runs(target, limit=1)
                if not newest:
                    _fail("no run yet: start one with panopipe run", exit_codes.AWS)
                execution = str(newest[0]["executionArn"])
            else:
                execution = runs.execution_arn(target, execution)
        except runs.RunError as error:
            _fail(str(error), error.exit_code)
        _watch(execution)


@app.command(epilog=exit_codes.HELP)
def status(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """The newest runs of the environment's pipeline, with the model and code package versions each deployed."""
    from panopipe import runs

    loaded = _config(_config_path(config))
    with _local_endpoint():
        try:
            target = runs.find_target(loaded)
            recent = runs.recent_runs(target, packages=True)
        except runs.RunError as error:
            _fail(str(error), error.exit_code)
    if not recent:
        console.print(f"{loaded.project}-{loaded.environment}: no run yet (start one with panopipe run)")
        return
    from panopipe.config.panorama_spec import package_names

    model_package, code_package = package_names(loaded)
    table = Table(
        title=f"{loaded.project}-{loaded.environment} pipeline runs",
        caption=f"packages: <version> <patch> of {model_package} (model) and {code_package} (code)",
        pad_edge=False,
    )
    for column in ("run", "status", "started", "took", "packages"):
        # only "started" wraps (date above time) on an 80-column terminal: names and patches are shown whole
        wraps = column == "started"
        table.add_column(column, no_wrap=not wraps, overflow="fold", min_width=8 if wraps else None)
    for item in recent:
        stopped = item.get("stopDate")
        took = f"{(stopped - item['startDate']).total_seconds():.0f} s" if stopped else "running"
        name = item.get("name") or str(item["executionArn"]).rsplit(":", 1)[-1]
        packages = item.get("packages") or {}
        deployed = [
            f"{kind} {packages[f'{kind} package']}" for kind in ("model", "code") if f"{kind} package" in packages
        ]
        table.add_row(name, item["status"], f"{item['startDate']:%m-%d %H:%M:%S}", took, "\n".join(deployed) or "-")
    console.print(table)


@app.command("package-app", epilog=exit_codes.HELP)
def package_app(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="the environment whose code package to register (default config/dev.yaml; not with --build-only)",
        ),
    ] = None,
    build_only: Annotated[
        bool, typer.Option("--build-only", help="build the asset into --output and register nothing (no config)")
    ] = False,
    output: Annotated[
        Path | None, typer.Option(help="--build-only: folder for <sha256>.tar.gz and code-asset.json")
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            help="--build-only: s3://bucket/prefix/ of built assets, keyed by the hash of what goes into the image;"
            " reused when panorama_app/ is unchanged, else built and stored there"
        ),
    ] = None,
    asset: Annotated[
        Path | None,
        typer.Option(help="register the asset a --build-only run left in this folder (no build, no Docker)"),
    ] = None,
    role_arn: Annotated[
        str | None, typer.Option(help="register as this IAM role (e.g. the environment account's deploy role)")
    ] = None,
) -> None:
    """Build the code package's container asset (arm64, from panorama_app/Dockerfile) and register it.

    Building needs Docker with buildx and arm64 emulation; while the local AWS runs, the asset is built
    without Docker (the application files, marked as a local build). Forms: `package-app --config C`
    (build, register, wait); `package-app --build-only --output DIR [--cache s3://B/P/]`;
    `package-app --config C --asset DIR` (register a built asset). A patch version registered before is
    not uploaded again; patch versions beyond runs.keep_package_versions are deregistered, never one a
    device's last good deployment runs.
    """
    from panopipe import code_package, runs

    _check_package_app_options(config, build_only, output, cache, asset, role_arn)
    loaded = None if build_only else _config(_config_path(config or DEFAULT_CONFIG))

    def say(line: str) -> None:
        console.print(line, highlight=False)

    with _local_endpoint():
        from panopipe import local_state

        # the local AWS runs nothing and needs no Docker: the application's files, marked as a local build
        local = local_state.emulator_in_use()
        builder: code_package.ContainerBuilder = code_package.LocalBuilder() if local else code_package.DockerBuilder()
        try:
            if build_only:
                assert output is not None
                built = (
                    code_package.build_cached(builder, ROOT, output, cache, say)
                    if cache
                    else code_package.build(builder, ROOT, output)
                )
                info = output / code_package.ASSET_INFO
                say(f"{built.kind} asset {built.path} (source {built.source_sha256[:12]}); described in {info}")
                return
            assert loaded is not None
            if asset is not None:
                built = code_package.read_asset(asset)
                if built.kind == "local" and not local:
                    _fail(
                        f"--asset {asset}: a local build (no container image, made while the local AWS ran) cannot be"
                        " registered in AWS: build it with Docker (panopipe package-app --build-only --output DIR)",
                        exit_codes.USAGE,
                    )
            else:
                say(f"building the code asset ({builder.kind}) …")
                built = code_package.build(builder, ROOT, Path(tempfile.mkdtemp(prefix="panopipe-code-asset-")))
            from panopipe.assumed_role import assumed_role

            with assumed_role(role_arn, "package-app", loaded.region):
                done = code_package.register(loaded, built, say=say)
        except runs.RunError as error:
            _fail(str(error), error.exit_code)
    registration = done.registration
    for key, value in (
        ("package", registration.package_name),
        ("version", registration.package_version),
        ("patch version", registration.patch_version),
        ("status", done.status),
    ):
        console.print(f"{key}: {value}", highlight=False)
    if done.deregistered:
        say(f"deregistered old patch versions: {', '.join(done.deregistered)}")
    if done.trim_note:
        say(done.trim_note)


def _check_package_app_options(
    config: Path | None,
    build_only: bool,
    output: Path | None,
    cache: str | None,
    asset: Path | None,
    role_arn: str | None,
) -> None:
    """Refuse option combinations ``package-app`` cannot take, before anything is built (exit 2)."""
    from panopipe.assumed_role import role_arn_problem
    from panopipe.code_package import parse_cache

    if build_only:
        if output is None:
            _fail(
                "--build-only needs --output DIR: the folder the asset and code-asset.json are written to",
                exit_codes.USAGE,
            )
        given = [name for name, value in (("--config", config), ("--asset", asset), ("--role-arn", role_arn)) if value]
        if given:
            _fail(f"--build-only registers nothing: it takes no {' or '.join(given)}", exit_codes.USAGE)
    else:
        extra = [name for name, value in (("--output", output), ("--cache", cache)) if value is not None]
        if extra:
            _fail(
                f"{' and '.join(extra)} go with --build-only (to register a built asset: --asset DIR)", exit_codes.USAGE
            )
    if output is not None and output.exists() and not output.is_dir():
        _fail(f"--output {output}: exists and is not a folder", exit_codes.USAGE)
    if cache is not None:
        try:
            parse_cache(cache)
        except Exception as error:  # RunError: one line
            _fail(str(error), exit_codes.USAGE)
    if role_arn is not None and (problem := role_arn_problem(role_arn)):
        _fail(f"--role-arn {role_arn!r}: {problem}", exit_codes.USAGE)


def _output_option(variable: str, output: str) -> Any:
    return typer.Option(envvar=variable, help=f"the stage's {output} stack output (default: ${variable})")


@app.command("verify-stage", epilog=exit_codes.HELP)
def verify_stage(
    state_machine_arn: Annotated[str | None, _output_option("STATE_MACHINE_ARN", "StateMachineArn")] = None,
    data_bucket: Annotated[str | None, _output_option("DATA_BUCKET", "DataBucketName")] = None,
    artifacts_bucket: Annotated[str | None, _output_option("ARTIFACTS_BUCKET", "ArtifactsBucketName")] = None,
    access_logs_bucket: Annotated[str | None, _output_option("ACCESS_LOGS_BUCKET", "AccessLogsBucketName")] = None,
    role_arn: Annotated[
        str | None, typer.Option(help="check as this IAM role (the delivery pipeline: the stage's verify role)")
    ] = None,
    smoke_model: Annotated[
        str | None,
        typer.Option(help="then start a run from this key of the data bucket (a small model.tar.gz) and wait for it"),
    ] = None,
    smoke_timeout_minutes: Annotated[
        int, typer.Option(min=5, max=480, help="how long the smoke run may take before the check fails")
    ] = 60,
    smoke_run_name: Annotated[str | None, typer.Option(help="the smoke run's name (default smoke-<UTC time>)")] = None,
) -> None:
    """Check a deployed environment: the state machine ACTIVE, the three buckets there and versioned.

    The delivery pipeline runs it after each stage deploys, with the stage's stack outputs in the
    environment; by hand, pass them (or export the variables). With --smoke-model it then starts a
    run and fails unless it SUCCEEDS within --smoke-timeout-minutes. Exit 1 when anything is wrong.
    """
    from panopipe import runs, stage_check
    from panopipe.assumed_role import assumed_role, role_arn_problem

    if role_arn is not None and (problem := role_arn_problem(role_arn)):
        _fail(f"--role-arn {role_arn!r}: {problem}", exit_codes.USAGE)
    given = {
        "STATE_MACHINE_ARN": state_machine_arn,
        "DATA_BUCKET": data_bucket,
        "ARTIFACTS_BUCKET": artifacts_bucket,
        "ACCESS_LOGS_BUCKET": access_logs_bucket,
    }

    def say(line: str) -> None:
        console.print(line, highlight=False)

    with _local_endpoint():
        try:
            outputs = stage_check.StageOutputs.from_variables({k: v for k, v in given.items() if v})
            with assumed_role(role_arn, "verify-stage", outputs.region):
                problems = stage_check.check_stage(outputs)
                if problems:
                    _fail("the stage is not ready:\n" + "\n".join(f"  - {p}" for p in problems), exit_codes.RUN_FAILED)
                say(
                    f"state machine {outputs.state_machine_arn} ACTIVE; buckets {', '.join(outputs.buckets.values())}"
                    " exist and are versioned"
                )
                if smoke_model:
                    arn = stage_check.smoke_run(
                        outputs, smoke_model, timeout_seconds=smoke_timeout_minutes * 60, name=smoke_run_name, say=say
                    )
                    say(f"smoke run SUCCEEDED: {arn}")
        except runs.RunError as error:
            _fail(str(error), error.exit_code)


local_app = typer.Typer(
    no_args_is_help=True,
    help="The embedded local AWS: start it with every stack deployed, stop it.",
    epilog=exit_codes.HELP,
)
app.add_typer(local_app, name="local")


@local_app.command("up", epilog=exit_codes.HELP)
def local_up(
    config: ConfigOption = DEFAULT_CONFIG,
    poll_seconds: Annotated[int, typer.Option(min=1, help="wait-loop interval of local runs (seconds)")] = 1,
    devices: Annotated[
        int | None,
        typer.Option(
            "--devices",
            metavar="N",
            help="register N local devices (1 to 1000), local-device-1 … local-device-N, each carrying every tag of "
            "the config's tag groups, besides its named devices (default: one device per tag group); the first 8 "
            "devices run the deployed application, the others simulate a healthy device",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start the local AWS (if not running), then bootstrap and deploy every stack with the real CDK CLI.

    The local AWS's Panorama devices are the config's named and id devices, then numbered ones for
    its tag groups (--devices). A local AWS that already runs keeps the devices it started with.
    """
    from panopipe import local_mode

    if devices is not None and (problem := local_mode.device_count_problem(devices)):
        _fail(problem, exit_codes.USAGE)
    path = _config_path(config)
    loaded = _config(path)
    try:
        done = local_mode.up(
            path, loaded, poll_seconds=poll_seconds, devices=devices, say=lambda line: console.print(line)
        )
    except local_mode.LocalModeError as error:
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted: the local AWS may still run (panopipe local down stops it)", exit_codes.INTERRUPTED)
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in done.seconds.items())
    console.print(f"deployed {loaded.project}-{loaded.environment} into {done.state.endpoint} ({timings})")


@local_app.command("down")
def local_down() -> None:
    """Stop the local AWS and its function processes (everything deployed in it is gone)."""
    from panopipe import local_mode

    console.print("local AWS stopped" if local_mode.down() else "no local AWS was running")


@local_app.command("outputs", epilog=exit_codes.HELP)
def local_outputs(
    config: ConfigOption = DEFAULT_CONFIG,
    timeout: Annotated[float, typer.Option(min=0, help="seconds to wait for the appliance's outputs")] = 120,
) -> None:
    """What the local appliance shows for the newest successful run: annotated frames and per-class counts."""
    from local_aws.appliance import outputs
    from panopipe import local_state, runs

    loaded = _config(_config_path(config))
    with _local_endpoint():
        if not local_state.emulator_in_use():
            _fail("the local AWS is not running: start it with make local (panopipe local up)", exit_codes.USAGE)
        try:
            target = runs.find_target(loaded)
            succeeded = [r for r in runs.recent_runs(target) if r["status"] == "SUCCEEDED"]
            # the newest run that deployed (a superseded run succeeds without deploying)
            deployed = (runs.progress(target, r["executionArn"]).output or {} for r in succeeded)
            output = next((o for o in deployed if o.get("deployment")), None)
            if output is None:
                _fail(f"{loaded.project}-{loaded.environment}: no successful run yet (panopipe run)", exit_codes.USAGE)
        except runs.RunError as error:
            _fail(str(error), error.exit_code)
    for device in (output.get("deployment") or {}).get("devices", []):
        folder = outputs.folder_of(str(device["device"]), str(device["instance_id"]))
        console.print(f"{device['device']} ({device['instance_id']}):", highlight=False)
        shown = outputs.summary(folder) if outputs.wait_for_outputs(folder, timeout) else None
        if shown is None:
            _fail(f"no appliance output in {folder} after {timeout:.0f} s (see its app.log)", exit_codes.RUN_FAILED)
        console.print("  " + shown.replace("\n", "\n  "), highlight=False)


def _watch(arn: str) -> None:
    """Follow the run ``arn`` to its end; exit 1 unless it SUCCEEDED (2: no such run; 3: AWS errors)."""
    from datetime import datetime

    from panopipe import runs

    unknown = (f"no run {arn} here (wrong account, region or endpoint?)", exit_codes.USAGE)
    last: runs.Progress | None = None
    try:
        with (
            runs.aws_errors("following the run", {"ExecutionDoesNotExist": unknown, "InvalidArn": unknown}),
            Live(console=console, refresh_per_second=4, transient=False) as live,
        ):
            for last in runs.follow(None, arn):
                now = last.stopped or datetime.now(UTC)
                live.update(_steps_table(last, now))
    except runs.RunError as error:
        _fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        _fail(f"stopped watching; the run goes on (panopipe watch {arn})", exit_codes.INTERRUPTED)
    assert last is not None
    console.print()
    for key, value in last.facts().items():
        console.print(f"{key}: {value}", highlight=False)
    if last.status != "SUCCEEDED":
        step = f" at {last.failed_step}" if last.failed_step else ""
        _fail(f"run {last.status}{step}: {last.error}: {last.cause}", exit_codes.RUN_FAILED)
    summary = (last.output or {}).get("summary") or {}
    took = (last.stopped or now) - last.started
    if summary.get("status") == "SUPERSEDED":  # newer data was deployed: nothing to do, not a failure
        console.print(f"[yellow]run SUPERSEDED[/yellow] in {took}: {summary.get('reason')}", highlight=False)
        return
    console.print(f"[green]run SUCCEEDED[/green] in {took}", highlight=False)


def _steps_table(current: Any, now: Any) -> Table:
    """One row per step in the order they first ran: how many times (polls) and for how long."""
    table = Table(title=f"{current.arn.rsplit(':', 1)[-1]}: {current.status}", title_justify="left")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    times: dict[str, list[float]] = {}
    for step in current.steps:
        if step.kind == "Task":
            times.setdefault(step.name, []).append(step.seconds(now))
    for name, spent in times.items():
        table.add_row(f"{name} ×{len(spent)}" if len(spent) > 1 else name, f"{sum(spent):.1f}")
    return table


def _sample_dataset() -> Path:
    """The sample data set: raw person/empty images generated once (``.panopipe/sample/``), prepared by the run."""
    from panopipe.samples.generate import sample_dataset

    return sample_dataset()


class _local_endpoint:
    """While a command runs, point boto3 at the local emulator if ``panopipe local up`` started one."""

    def __enter__(self) -> None:
        from panopipe import local_state

        self._saved = local_state.apply_endpoint()
        if self._saved:
            errors.print(f"(using the local AWS at {os.environ['AWS_ENDPOINT_URL']}: `panopipe local down` to stop it)")

    def __exit__(self, *exc: object) -> None:
        from panopipe import local_state

        local_state.restore(self._saved)


def main() -> None:
    """Console entry point: the ``panopipe`` script of the venv, and ``python -m panopipe``."""
    app(prog_name="panopipe")


if __name__ == "__main__":
    main()
