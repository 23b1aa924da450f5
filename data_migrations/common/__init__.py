"""Data migrations of the common feature."""
