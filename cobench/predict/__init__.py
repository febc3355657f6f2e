"""Stage 2, the functional core: operators, the vectorised roofline, the latency model that applies a calibration,
and predictions.
"""
