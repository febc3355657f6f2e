"""Stage 3, on the device: ONNX export, runners, the timing harness and its statistics, telemetry, workers,
profiles and kernel microbenchmarks.
"""
