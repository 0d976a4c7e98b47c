"""Validation and parsing of user-supplied metadata: ids, CSV rows, config, file names."""
