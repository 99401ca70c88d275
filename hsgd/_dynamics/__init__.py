"""Deterministic dynamics: one module per (problem, optimizer) cell (`streaming_sgd`,
`finite_sgd`, `finite_heavy_ball`), the structured stiff integrator they share (`structured`),
and the coarsening estimate (`refinement`). The cells register themselves with
`hsgd._registry` when imported (`hsgd/__init__.py` imports them)."""
