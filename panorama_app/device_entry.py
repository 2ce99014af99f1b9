"""The container's /panorama/app.py: the only code that imports the device-only Panorama SDK.

The application starts whenever this file is *run*, and never when it is *imported*:

- on the appliance the code descriptor runs ``python3 /panorama/app.py``: ``__name__`` is "__main__";
- AWS's Panorama Test Utility (aws-panorama-samples, ``panorama_test_utility_run.py``) runs the source
  with ``exec(compile(source, name, "exec"), namespace, namespace)`` and ``namespace = {}``: the code
  gets no ``__name__`` of its own (the name resolves to the builtins module's, "builtins") and no
  ``__spec__``, so a ``__name__ == "__main__"`` guard alone would silently do nothing there;
- ``runpy.run_path`` and the like: no ``__spec__`` either.

An import (``import panorama_app.device_entry`` by tests or tools, under whatever name) always gives
the module a ``__spec__`` and a ``__name__`` other than "__main__": then it only defines ``App`` and
``main``. So the test below is "run as a script, or executed without an import".
"""

import panoramasdk

from panorama_app.application import Application, configure_logging


class App(panoramasdk.node):  # type: ignore[misc]
    """The code node: builds the application from this node's inputs and runs its loop."""

    def __init__(self) -> None:
        super().__init__()
        self.application = Application.from_node(self)


def main() -> None:
    """Log to the console (INFO until the ``log_level`` parameter is read), build the node, run the loop."""
    configure_logging()
    App().application.run()


if __name__ == "__main__" or globals().get("__spec__") is None:
    main()
