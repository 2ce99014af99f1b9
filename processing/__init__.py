"""The data preparation script (``prepare.py``), shipped to SageMaker Processing as one file."""
