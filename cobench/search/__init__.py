"""Stage 5, choosing: the Pareto frontier and selection (pure), scoring a search space, and the pareto/select
analyses.
"""
