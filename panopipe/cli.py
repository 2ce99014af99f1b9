"""``panopipe``: validate a config, start and watch pipeline runs, run the whole thing locally.

The same commands work against a real account (the usual AWS credential chain) and against the
local emulator (``panopipe local up`` leaves ``AWS_ENDPOINT_URL`` hints in ``.panopipe/local.json``
and every command picks it up while it runs). Heavy modules are imported inside the commands, so
``--help`` stays instant.
"""

from __future__ import annotations

import os
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from panopipe.config import DEFAULT_CONFIG_PATH, ConfigError, EnvironmentConfig, load_config

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Validate a config; start, watch and list pipeline runs; run everything locally.",
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="the environment's config file")]


def _config(path: Path) -> EnvironmentConfig:
    try:
        return load_config(path)
    except ConfigError as error:
        errors.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(1) from None


def _fail(message: str) -> None:
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="config file")] = Path(DEFAULT_CONFIG_PATH)) -> None:
    """Check a config file and the Panorama manifests it generates (graph, overrides, descriptors)."""
    from panopipe.config.panorama_spec import application_spec
    from panorama_app.manifest import documents
    from panorama_app.manifest.rules import ManifestError
    from panorama_app.manifest.validation import payload, validate_descriptor

    loaded = _config(config)
    spec = application_spec(loaded)
    try:
        graph = documents.graph(spec, "123456789012")
        documents.camera_overrides(spec, "123456789012", graph)
        validate_descriptor(documents.model_descriptor(spec))
    except ManifestError as error:
        _fail(f"{config}: the generated manifests are invalid:\n{error}")
    console.print(
        f"{config}: valid ({loaded.project}-{loaded.environment}, {len(loaded.devices)} device(s), "
        f"{len(loaded.cameras)} camera(s); graph.json {len(payload(graph))} of 51200 characters)",
        highlight=False,
    )


@app.command()
def summary(assembly: Annotated[Path, typer.Argument(help="cloud assembly directory")] = Path("cdk.out")) -> None:
    """List the stacks and resources that `cdk deploy '**'` would create from a synthesized app."""
    from panopipe.summary import render, summarize

    if not (assembly / "manifest.json").is_file():
        _fail(f"{assembly / 'manifest.json'} not found: synthesize first (make synth)")
    console.print(render(summarize(assembly)), highlight=False)
    console.print(
        "\nNothing was deployed. To deploy to an AWS account: npx cdk bootstrap && "
        "npx cdk deploy '**' -c config=<your config>",
        highlight=False,
    )


@app.command()
def run(
    config: ConfigOption = Path(DEFAULT_CONFIG_PATH),
    dataset: Annotated[
        Path | None, typer.Option(help="local folder with train/ and validation/ to upload and train on")
    ] = None,
    name: Annotated[str, typer.Option(help="data set folder name under pipeline.dataset_prefix")] = "sample",
    model: Annotated[str | None, typer.Option(help="s3:// URI of a model trained elsewhere (skip training)")] = None,
    training_job: Annotated[str | None, typer.Option(help="a Completed SageMaker training job (skip training)")] = None,
    watch_run: Annotated[bool, typer.Option("--watch/--no-watch", help="follow the run until it ends")] = True,
) -> None:
    """Start a run: upload a data set (default: the bundled sample) or name a model or training job."""
    from panopipe import runs

    loaded = _config(config)
    with _local_endpoint():
        try:
            target = runs.find_target(loaded)
            if model or training_job:
                source = {"model": model} if model else {"training_job": training_job}
                arn = runs.start(target, source)
            else:
                folder, prefix = dataset or _sample_dataset(), loaded.runs.dataset_prefix
                version = runs.upload_dataset(target, folder, name, prefix)
                run_name = runs.dataset_run_name(target, name, version, prefix)
                arn = runs.start(target, {"dataset": f"s3://{target.data_bucket}/{prefix}{name}/"}, run_name)
        except runs.RunError as error:
            _fail(str(error))
        console.print(f"started {arn}", highlight=False)
        if watch_run:
            _watch(target, arn)


@app.command()
def watch(
    execution: Annotated[str | None, typer.Argument(help="execution ARN (default: the newest run)")] = None,
    config: ConfigOption = Path(DEFAULT_CONFIG_PATH),
) -> None:
    """Follow a run step by step until it ends; exit 1 if it failed."""
    from panopipe import runs

    loaded = _config(config)
    with _local_endpoint():
        try:
            target = runs.find_target(loaded)
            newest = runs.recent_runs(target, limit=1)
        except runs.RunError as error:
            _fail(str(error))
        if execution is None and not newest:
            _fail("no run yet: start one with panopipe run")
        _watch(target, execution or newest[0]["executionArn"])


@app.command()
def status(config: ConfigOption = Path(DEFAULT_CONFIG_PATH)) -> None:
    """The newest runs of the environment's pipeline."""
    from panopipe import runs

    loaded = _config(config)
    with _local_endpoint():
        try:
            target = runs.find_target(loaded)
            recent = runs.recent_runs(target)
        except runs.RunError as error:
            _fail(str(error))
    table = Table(title=f"{loaded.project}-{loaded.environment} pipeline runs")
    for column in ("run", "status", "started", "took"):
        table.add_column(column, no_wrap=True)
    for item in recent:
        stopped = item.get("stopDate")
        took = f"{(stopped - item['startDate']).total_seconds():.0f} s" if stopped else "running"
        table.add_row(item["name"], item["status"], f"{item['startDate']:%Y-%m-%d %H:%M:%S}", took)
    console.print(table)


local_app = typer.Typer(
    no_args_is_help=True, help="The embedded local AWS: start it with every stack deployed, stop it."
)
app.add_typer(local_app, name="local")


@local_app.command("up")
def local_up(
    config: ConfigOption = Path(DEFAULT_CONFIG_PATH),
    poll_seconds: Annotated[int, typer.Option(min=1, help="wait-loop interval of local runs (seconds)")] = 1,
) -> None:
    """Start the local AWS (if not running), then bootstrap and deploy every stack with the real CDK CLI."""
    from panopipe import local_mode

    loaded = _config(config)
    try:
        done = local_mode.up(config, loaded, poll_seconds=poll_seconds, say=lambda line: console.print(line))
    except local_mode.LocalModeError as error:
        _fail(str(error))
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in done.seconds.items())
    console.print(f"deployed {loaded.project}-{loaded.environment} into {done.state.endpoint} ({timings})")


@local_app.command("down")
def local_down() -> None:
    """Stop the local AWS and its function processes (everything deployed in it is gone)."""
    from panopipe import local_mode

    console.print("local AWS stopped" if local_mode.down() else "no local AWS was running")


def _watch(target: Any, arn: str) -> None:
    from datetime import datetime

    from panopipe import runs

    last: runs.Progress | None = None
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        for last in runs.follow(target, arn):
            now = last.stopped or datetime.now(UTC)
            live.update(_steps_table(last, now))
    assert last is not None
    console.print()
    for key, value in last.facts().items():
        console.print(f"{key}: {value}", highlight=False)
    if last.status != "SUCCEEDED":
        step = f" at {last.failed_step}" if last.failed_step else ""
        _fail(f"run {last.status}{step}: {last.error}: {last.cause}")
    console.print(f"[green]run SUCCEEDED[/green] in {(last.stopped or now) - last.started}", highlight=False)


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
    """The small data set bundled for local runs (synthetic records: the local mode does not train)."""
    return Path(__file__).resolve().parent / "samples" / "dataset"


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
    """Console entry point (``python -m panopipe``)."""
    app(prog_name="panopipe")


if __name__ == "__main__":
    main()
