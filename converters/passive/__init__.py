"""The passive model: network, ImageNet weights, train, convert, frozen features, LOPO, the two-view model.

Layer: imports ``converters.data``, ``converters.measure`` and the device package.
"""
