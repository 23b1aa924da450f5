"""Data migrations of the strategy feature."""
