"""panorama-pipeline: configuration, naming and the `panopipe` command line."""
