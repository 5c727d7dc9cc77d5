"""The co-design sweep (issue 18): encoder designs mapped in physics quality against area and
latency.  :mod:`flow.sweep.grid` expands the grid and computes the Pareto front."""
