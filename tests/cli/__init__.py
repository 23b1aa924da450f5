"""Tests of the tradedb command line: outputs, exit codes, bad input."""
