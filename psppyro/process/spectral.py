"""Placeholder: being written (spectral densities)."""


class SpectralDensity:
    pass


class PSPGenDensity(SpectralDensity):
    pass


class PSPGen10DDensity(SpectralDensity):
    pass


class SpectralMixtureDensity(SpectralDensity):
    pass


class GaussianFilterDensity(SpectralDensity):
    pass
