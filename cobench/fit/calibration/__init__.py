"""Calibration of the latency model, in the order it happens: design matrix → solve → validation → record;
calibrate ties them together.
"""
