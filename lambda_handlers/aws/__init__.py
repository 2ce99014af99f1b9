"""One module per AWS service; clients are created on first use and can be replaced in tests."""
