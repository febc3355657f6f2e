"""Stage 1, what is being run: architectures (and their exact counts), HF configs, presets, search spaces,
workloads, precisions, queue files and the torch module.
"""
