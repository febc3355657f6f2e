"""cobench: roofline latency modelling and on-device profiling for hardware co-design of small LLMs."""

__version__ = "0.1.0"
