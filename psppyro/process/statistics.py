"""Placeholder: being written (two-point statistics)."""


def two_point_correlation(x):
    raise NotImplementedError


def correlation_length(x):
    raise NotImplementedError
