"""AllenNLP language-model archives (Transformer ELMo's ``model.tar.gz``, or its unpacked
folder): imported once into the cache as a training run (:func:`bilm.io.allennlp.import_allennlp`:
softmax and vocabulary kept), then read as one (:mod:`bilm.models.run`)."""

from __future__ import annotations

import os
import tarfile

from bilm.models.registry import ModelError, ModelFamily, ModelFiles, register_family

__all__ = ["FAMILY"]


def _detect(path: str) -> bool:
    if os.path.isdir(path):
        config = os.path.join(path, "config.json")
        if not (os.path.isfile(config) and os.path.isfile(os.path.join(path, "weights.th"))):
            return False
        try:
            with open(config, encoding="utf-8") as f:
                return '"model"' in f.read(1 << 20)
        except (OSError, UnicodeDecodeError):
            return False
    if path.endswith((".tar.gz", ".tgz", ".tar")):
        return True
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _open(path: str) -> ModelFiles:
    from bilm.io.allennlp import ArchiveError
    from bilm.models.cache import converted
    from bilm.models.run import open_run

    def write(out: str) -> None:
        from bilm.io.allennlp import import_allennlp

        try:
            import_allennlp(path, os.path.join(out, "run"))
        except ArchiveError as e:
            raise ModelError(str(e)) from None

    folder = converted("allennlp", path, write)  # returns once the conversion is whole
    return open_run(os.path.join(folder, "run"), family="allennlp-archive", source=path)


FAMILY = register_family(ModelFamily(
    "allennlp-archive", "AllenNLP language-model archive (Transformer ELMo model.tar.gz)",
    _detect, _open, needs_tensorflow=True))
