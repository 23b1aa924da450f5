"""Data migrations of the discord feature."""
