"""The real optimisers (ground truth), one module per (problem, optimizer) cell."""
