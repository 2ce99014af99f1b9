"""The local AWS's machine learning: a separate Python environment that runs real training and inference."""
