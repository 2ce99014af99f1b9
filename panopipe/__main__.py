"""``python -m panopipe``: the command line (``panopipe/cli.py``)."""

from panopipe.cli import main

main()
