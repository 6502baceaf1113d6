"""Every file format, read and written safely.

Weights: ``formats`` (the registry; a new format is one registration), ``weights`` (load and
save a network's weight table in any format), ``hdf5`` (bilm-tf's, built in), ``tf1``
(bilm-tf's TF1 checkpoints), ``checkpoints`` (ours: naming, restore). Archives: ``allennlp*``
(AllenNLP language-model archives), ``torch_*`` (PyTorch pickles, without torch). Outputs:
``files`` (atomic, never replacing what appeared meanwhile), ``output_errors``,
``stop_signals``, ``processes``, ``progress``.
"""
