"""The container's /panorama/app.py: the only code that imports the device-only Panorama SDK."""

import logging

import panoramasdk

from panorama_app.application import Application

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class App(panoramasdk.node):  # type: ignore[misc]
    """The code node: builds the application from this node's inputs and runs its loop."""

    def __init__(self) -> None:
        super().__init__()
        self.application = Application.from_node(self)


if __name__ == "__main__":
    App().application.run()
