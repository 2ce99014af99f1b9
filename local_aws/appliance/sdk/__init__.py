"""The ``panoramasdk`` stand-in: this folder goes on the application's path (its modules are top-level there)."""
