"""Pipeline step handlers (one module per step) arrive with the pipeline issue."""
