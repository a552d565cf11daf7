"""The ``ummgat`` trainer: UMMGAT (StarGAN-v2 style E, M, G on a backbone plugin, D) with LAM.

``networks.py`` holds every network, ``losses.py`` the losses, ``trainer.py`` the training loop
and ``generator.py`` the inference-time :class:`harmonix.Generator`.
"""

from harmonix.sdk import hookimpl


@hookimpl
def register_trainers(register):
    register("ummgat", "harmonix_ummgat.trainer:UMMGATTrainer")
