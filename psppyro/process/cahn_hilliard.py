"""Placeholder: being written (CahnHilliard)."""


class CahnHilliard:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError
