"""Placeholder: being written (permeability)."""

LOG_PERMEABILITY_FLOOR = -30.0


def permeability(x, refine=1, method="mac"):
    raise NotImplementedError


def log_permeability(x, floor=LOG_PERMEABILITY_FLOOR, return_percolation=False):
    raise NotImplementedError


def percolates(x):
    raise NotImplementedError


def extrapolate_permeability(x, refines=(1, 2)):
    raise NotImplementedError
