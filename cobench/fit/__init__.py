"""Stage 4, fitting models to measurements: the latency calibration, training runs and loss laws."""
