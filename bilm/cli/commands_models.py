"""``bilm models`` (the catalogue of released models) and ``bilm download NAME``."""

from __future__ import annotations

import argparse
import logging
import os

from bilm._shell import UserError

__all__ = ["cmd_download", "cmd_import_efml", "cmd_import_tfhub", "cmd_models"]

logger = logging.getLogger("bilm")


def cmd_models(args: argparse.Namespace) -> None:
    from bilm.models import families
    from bilm.models.catalogue import entries, local_path

    readable = {f.name for f in families()}
    rows = [("NAME", "FAMILY", "LANGUAGE", "SIZE", "STATE", "PAGE")]
    for e in entries():
        state = ("downloaded" if os.path.isdir(local_path(e)) else
                 "-" if e.family in readable else "not read yet")
        rows.append((e.name, e.family, e.language, e.size, state, e.page))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    if args.verbose_urls:
        for e in entries():
            for name, url in e.files.items():
                print(f"{e.name}/{name}: {url}")


def cmd_download(args: argparse.Namespace) -> None:
    from bilm.cli.checks import start_tensorflow
    from bilm.models.catalogue import fetch, find_entry, local_path

    entry = find_entry(args.name)
    if entry is None:
        raise UserError(f"no model called {args.name!r} in the catalogue; 'bilm models' lists "
                        "them")
    if not os.path.isdir(local_path(entry)):
        start_tensorflow(args)  # the download is verified by loading it
    print(fetch(entry, progress=not args.quiet))


def cmd_import_tfhub(args: argparse.Namespace) -> None:
    from bilm.cli.checks import need_file, start_tensorflow
    from bilm.io.files import atomic_dir
    from bilm.models.tfhub import FAMILY, import_module

    if not FAMILY.detect(args.module):
        raise UserError(f"{args.module} is not a TF Hub v1 module folder (saved_model.pb, "
                        "tfhub_module.pb, variables/); unpack a downloaded .tar.gz first")
    need_file(args.options, "options file")
    if os.path.exists(args.output) and not args.overwrite:
        raise UserError(f"{args.output} exists; pass --overwrite to replace it")
    start_tensorflow(args)
    with atomic_dir(args.output, overwrite=args.overwrite) as tmp:
        options = import_module(args.module, tmp, args.options)
    print(f"wrote {os.path.join(args.output, 'options.json')} and weights.hdf5 "
          f"({options['lstm']['n_layers']}-layer LSTM {options['lstm']['dim']}/"
          f"{options['lstm']['projection_dim']}); the module's output mix, if any, in mix.json")


def cmd_import_efml(args: argparse.Namespace) -> None:
    from bilm.io.files import atomic_dir
    from bilm.models import detect_model
    from bilm.models.efml import convert

    if os.path.exists(args.output) and not args.overwrite:
        raise UserError(f"{args.output} exists; pass --overwrite to replace it")
    family, path = detect_model(args.model)
    if family.name == "nlpl":  # an NLPL archive: unpacked (checked) into the cache first
        from bilm.models.nlpl import unpacked

        path = unpacked(path)
    elif family.name != "efml":
        raise UserError(f"{args.model} is a {family.title} model, not ELMoForManyLangs'")
    with atomic_dir(args.output, overwrite=args.overwrite) as tmp:
        options = convert(path, tmp)
    te = options["token_embedder"]
    print(f"wrote {os.path.join(args.output, 'options.json')} and weights.hdf5 "
          f"({len(te['chars']):,} characters, "
          f"{len(te['words']) if 'words' in te else 0:,} words)")
