"""Local mode: an AWS emulator on loopback (moto in server mode plus the project's own extensions)."""
