"""The model, in the KerasHub manner: a backbone built from its registry row
(config/backbones.py; backbones.py for weights, scratch.py for our own networks), the
preprocessing that runs inside it (preprocessing.py), augmentation (augment.py), the head
(head.py), their assembly (assembly.py) and batched inference (inference.py)."""
