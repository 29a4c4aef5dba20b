"""Placeholder: being written (GaussianRandomField)."""


class GaussianRandomField:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError
