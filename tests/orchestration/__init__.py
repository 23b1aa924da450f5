"""Tests of the Dagster code location: definitions, deploys, schedules, sensors, the webserver."""
