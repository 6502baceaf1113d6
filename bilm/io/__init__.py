"""Reading and writing files: safe outputs and bounded readers (``files``), HDF5 weights and
bilm-tf's TF1 checkpoints (``hdf5``), our checkpoints (``checkpoints``), PyTorch pickles read
without torch (``torch_pickle``) and AllenNLP archives (``allennlp``)."""
