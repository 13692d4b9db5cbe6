"""The folder to name in nnU-Net's ``nnUNet_extTrainer`` (``python -m domainaug.training.nnunet``
prints it): nnU-Net imports each module here by its bare name and looks for the trainer class."""
