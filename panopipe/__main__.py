"""`python -m panopipe`: validate a config, or summarize what a synthesized app would deploy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from panopipe.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from panopipe.summary import render, summarize


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="panopipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check a configuration file")
    validate.add_argument("config", nargs="?", default=DEFAULT_CONFIG_PATH)
    summary = commands.add_parser("summary", help="list the stacks and resources in a cloud assembly")
    summary.add_argument("assembly", nargs="?", default="cdk.out")
    args = parser.parse_args(argv)

    if args.command == "validate":
        try:
            config = load_config(args.config)
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{args.config}: valid ({config.project}-{config.environment}, {len(config.devices)} device(s))")
        return 0
    manifest = Path(args.assembly) / "manifest.json"
    if not manifest.is_file():
        print(f"error: {manifest} not found: synthesize first (make synth)", file=sys.stderr)
        return 1
    print(render(summarize(Path(args.assembly))))
    print(
        "\nNothing was deployed. To deploy to an AWS account: npx cdk bootstrap && "
        "npx cdk deploy --all -c config=<your config>"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
