"""imaseg's robust nnU-Net trainers, for nnU-Net's trainer search: ``export nnUNet_extTrainer=THIS_FOLDER``
(``imaseg nnunet install-trainers --print-folder`` prints it)."""

from imaseg.nnunet.trainer import *  # noqa: F401,F403
