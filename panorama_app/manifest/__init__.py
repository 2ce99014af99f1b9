"""Panorama manifests (graph, overrides, packages, descriptors): typed spec, builders, validation.

Standard library only: the pipeline's deploy step (a Lambda function) imports this package.
"""

from panorama_app.manifest.rules import ManifestError
from panorama_app.manifest.spec import ApplicationSpec, Parameter

__all__ = ["ApplicationSpec", "ManifestError", "Parameter"]
