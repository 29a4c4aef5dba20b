"""Placeholder: being written (conductivity)."""


def conductivity(x, phases=(1.0, 50.0), method="fft"):
    raise NotImplementedError
