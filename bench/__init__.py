"""The benchmarks: scripts that print a table and write JSON (``stylecam bench NAME``), not timed tests."""
