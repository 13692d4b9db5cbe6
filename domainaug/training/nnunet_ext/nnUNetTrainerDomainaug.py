"""Found by nnU-Net's trainer search through ``nnUNet_extTrainer`` (see ``domainaug.training.nnunet``)."""

from domainaug.training.nnunet import nnUNetTrainerDomainaug

__all__ = ["nnUNetTrainerDomainaug"]
