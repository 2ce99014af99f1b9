"""The GitOps delivery pipeline (CDK Pipelines): built only from a delivery file (``-c delivery=<file>``)."""
