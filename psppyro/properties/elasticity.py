"""Placeholder: being written (elasticity)."""


def elasticity(x, youngs=(1.0, 50.0), poisson=0.3, plane="strain", method="fft"):
    raise NotImplementedError
