"""Placeholder: being written (presets)."""

PRESETS = {}


def preset(name):
    raise NotImplementedError


def from_config(config):
    raise NotImplementedError
