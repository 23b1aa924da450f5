"""Data migrations of the execution feature."""
