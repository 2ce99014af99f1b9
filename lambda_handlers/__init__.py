"""The pipeline's Lambda handlers: one module per step, shared settings, errors and AWS clients.

Everything here runs in the Lambda Python runtime with boto3 only (plus the Powertools layer), and
imports nothing from outside ``lambda_handlers/`` and ``panorama_app/manifest/``.
"""
