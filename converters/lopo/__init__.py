"""Leave-one-person-out validation of the passive recipes, and the two-view device model trained by the best.

``python -m converters.lopo DATA_ROOT`` (run.py) holds out every person with attack presentations in
turn; recipes.py says what each recipe trains on, data.py loads the crops' frozen features, texture.py
scores every row with the MiniFASNet pair, report.py draws the chart; two_view.py makes the shipped
two-view model with the recipe LOPO measured best.

Layer: imports ``converters.passive`` (features, the MiniFASNet wrapper), ``converters.data``,
``converters.measure`` and the device package.
"""
