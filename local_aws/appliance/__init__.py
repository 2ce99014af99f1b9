"""The local appliance: the local Panorama service's devices run deployed applications for real.

``runner`` starts an instance's ``app.py`` in a process with the ``panoramasdk`` stand-in of ``sdk/``,
``graph`` reads what the deployed graph wires into the code node, ``model_server`` runs a model node's
MXNet model in the ML environment. Off unless the ``PanoramaBackend`` is given ``ApplianceSettings``.
"""

from local_aws.appliance.runner import Appliance, ApplianceSettings, Deployment

__all__ = ["Appliance", "ApplianceSettings", "Deployment"]
