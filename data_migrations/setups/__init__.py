"""Data migrations of the setups feature."""
