"""Design-space exploration: sweeps of configurations over a network's layers.

`ommatidia.explore.sweep` runs every (configuration, layer) through the mapper and the
analytical model on Dask and writes a CSV; `ommatidia.explore.pareto` finds and plots the
energy/cycles Pareto front; `ommatidia.explore.resources` estimates FPGA resources from a
table measured by synthesis (docs/sweep.md).
"""
