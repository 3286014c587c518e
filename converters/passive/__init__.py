"""The passive model: network, ImageNet weights, train, convert, frozen features, the MiniFASNet pair.

Layer: imports ``converters.data``, ``converters.measure`` and the device package.
"""
