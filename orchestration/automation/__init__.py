"""Automation area: jobs (and, later, schedules and sensors)."""
