"""Stage 5, choosing: sweeps of a search space (here or over a cluster), the Pareto frontier and selection
(pure), scoring a search space, and the pareto/select analyses.
"""
