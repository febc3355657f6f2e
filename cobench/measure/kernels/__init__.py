"""Kernel microbenchmarks: suites (what to time), results (what was measured), one module per backend, run (how)."""
