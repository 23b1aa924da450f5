"""Tests of the core layer: settings, alerts, connections."""
