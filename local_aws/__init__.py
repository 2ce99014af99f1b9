"""The local AWS: moto in server mode, the project's patches, and a local Panorama service (README.md)."""
