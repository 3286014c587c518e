"""Fine-tuning beyond frozen features (issue 26, item 4): the tight view trained end to end in PyTorch.

pack.py packs the LOPO crops, folds and ImageNet weights to travel to a GPU machine; gpu_lopo.py trains one
model per fold there (or on a workstation's cores) and scores the people each fold left out; judge.py judges
those scores beside the frozen-feature head on the same folds; mobilenet_torch.py is the network and
check_import.py checks it against the frozen recipes' Keras features. torch is imported only inside these
modules' functions that train or run the network.

Layer: imports ``converters.data`` (the recapture synthesiser), ``converters.passive`` (the ImageNet weights
from TFLite, the frozen heads) and ``converters.lopo`` (the LOPO data, groups and thresholds).
"""
