"""Tests of the local mode (the embedded AWS emulator)."""
