"""Tests of the data-migration engine and the app's data migrations."""
