"""Models named by a path or a catalogue name (bilm.models): NLPL archives of the bilm-tf
fixture against bilm-tf's own embeddings, safe unpacking, the catalogue's download against a
local HTTP server (a dropped connection, a wrong size, a corrupt archive, a mirror)."""

import gzip
import http.server
import json
import os
import shutil
import stat
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from bilm import Batcher, BidirectionalLanguageModel
from tests.conftest import bilm
from tests.test_model import check_golden, load_golden


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A cache of this test's own, no mirror, no extra catalogue."""
    monkeypatch.setenv("BILM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BILM_MODELS_URL", raising=False)
    monkeypatch.delenv("BILM_CATALOGUE", raising=False)
    return tmp_path / "cache"


def nlpl_zip(fixture_model: Path, path: Path, folder: str | None = None,
             gz: bool = True) -> Path:
    """An NLPL-style archive of the bilm-tf fixture: model.hdf5, options.json, meta.json and a
    (gzipped) vocab.txt, at the root or inside ``folder``."""
    meta = {"id": 999, "corpus": [{"description": "bilm-tf test data"}],
            "algorithm": {"name": "ELMo", "id": 9}, "dimensions": 32}
    vocab = (fixture_model / "vocab_test.txt").read_bytes()
    prefix = f"{folder}/" if folder else ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(fixture_model / "options.json", prefix + "options.json")
        z.write(fixture_model / "lm_weights.hdf5", prefix + "model.hdf5")
        z.writestr(prefix + "meta.json", json.dumps(meta))
        if gz:
            z.writestr(prefix + "vocab.txt.gz", gzip.compress(vocab))
        else:
            z.writestr(prefix + "vocab.txt", vocab)
    return path


@pytest.mark.parametrize("folder", [None, "999"])
def test_nlpl_zip_reproduces_bilm_tf(fixture_model, tmp_path, folder):
    archive = nlpl_zip(fixture_model, tmp_path / "999.zip", folder)
    sentences, expected = load_golden(fixture_model)
    model = BidirectionalLanguageModel.from_model(archive, max_batch_size=4)
    batcher = Batcher(fixture_model / "vocab_test.txt", 50)
    check_golden(model, batcher.batch_sentences, sentences, expected)


def test_nlpl_zip_info_and_embed_equal_the_plain_files(fixture_model, tmp_path, cache):
    archive = nlpl_zip(fixture_model, tmp_path / "999.zip")
    info = bilm("info", "--model", archive).ok().out
    assert "NLPL repository archive" in info and "bilm-tf" in info
    assert 'meta.json corpus: [{"description": "bilm-tf test data"}]' in info
    n_vocab = len((fixture_model / "vocab_test.txt").read_text().splitlines())
    assert f"vocabulary: {n_vocab:,} tokens" in info
    assert "softmax: no" in info and "the weights match the options" in info
    text = tmp_path / "in.txt"
    text.write_text("The first sentence .\nAnother one here\n")
    bilm("embed", text, tmp_path / "zip.hdf5", "--model", archive, "--layers", "top").ok()
    bilm("embed", text, tmp_path / "plain.hdf5", "--options", fixture_model / "options.json",
         "--weights", fixture_model / "lm_weights.hdf5", "--layers", "top").ok()
    with h5py.File(tmp_path / "zip.hdf5") as a, h5py.File(tmp_path / "plain.hdf5") as b:
        assert sorted(a) == sorted(b) == ["0", "1"]
        for key in a:
            np.testing.assert_array_equal(a[key][()], b[key][()])
    # unpacked once: the second use reads the cache
    unpacked = list((cache / "unpacked").iterdir())
    assert len(unpacked) == 1 and (unpacked[0] / "model.hdf5").is_file()


def test_model_folder_and_flags_conflict(fixture_model, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(fixture_model / "options.json", folder)
    shutil.copy(fixture_model / "lm_weights.hdf5", folder)
    out = bilm("dump-tokens", fixture_model / "vocab_test.txt", tmp_path / "t.hdf5", "--model",
               folder).ok()
    assert out.code == 0
    with h5py.File(tmp_path / "t.hdf5") as f:
        assert f["embedding"].shape == (len((fixture_model / "vocab_test.txt").read_text()
                                            .splitlines()), 16)
    both = bilm("info", "--model", folder, "--options", folder / "options.json")
    assert both.code == 2 and "leave out --options" in both.err
    neither = bilm("info")
    assert neither.code == 2 and "--model PATH_OR_NAME" in neither.err


def _crafted_zip(path: Path, kind: str) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("options.json", "{}")
        if kind == "traversal":
            z.writestr("../evil.txt", "x")
        elif kind == "absolute":
            z.writestr("/tmp/evil.txt", "x")
        elif kind == "symlink":
            info = zipfile.ZipInfo("model.hdf5")
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
        elif kind == "bomb":
            z.writestr(zipfile.ZipInfo("model.hdf5"), b"\0" * (1 << 20),
                       compress_type=zipfile.ZIP_DEFLATED)
    return path


@pytest.mark.parametrize("kind, words", [
    ("traversal", "a path outside the archive"), ("absolute", "a path outside the archive"),
    ("symlink", "a symbolic link"), ("bomb", "zip bomb")])
def test_crafted_zip_is_refused_before_anything_is_written(tmp_path, cache, kind, words):
    archive = _crafted_zip(tmp_path / f"{kind}.zip", kind)
    out = bilm("info", "--model", archive)
    assert out.code == 2 and words in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    unpacked = cache / "unpacked"
    assert not unpacked.exists() or not any(p.name.endswith(".zip") or ("-" in p.name
                                            and not p.name.endswith(".part"))
                                            for p in unpacked.iterdir())


def test_truncated_and_lying_zips(fixture_model, tmp_path):
    archive = nlpl_zip(fixture_model, tmp_path / "999.zip", gz=False)
    data = archive.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    out = bilm("info", "--model", cut)
    assert out.code == 2 and len(out.err.strip().splitlines()) == 1
    # a member whose header declares fewer bytes than its data holds: caught while unpacking
    lying = tmp_path / "lying.zip"
    with zipfile.ZipFile(lying, "w", zipfile.ZIP_STORED) as z:
        z.writestr("options.json", (fixture_model / "options.json").read_text())
        z.writestr("model.hdf5", b"x" * 1000)
    raw = bytearray(lying.read_bytes())
    central = raw.rfind(b"PK\x01\x02")  # the last member's central directory entry
    raw[central + 24: central + 28] = (10).to_bytes(4, "little")  # its uncompressed size
    lying.write_bytes(bytes(raw))
    out = bilm("info", "--model", lying)
    assert out.code == 2 and "model.hdf5" in out.err, out.err


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b"\x80\x02}q\x00."), "a PyTorch file"),
    (lambda p: (p.mkdir(), (p / "saved_model.pb").write_bytes(b"x")), "TensorFlow SavedModel"),
    (lambda p: (p.mkdir(), (p / "char.dic").write_text("a\t1\n"),
                (p / "encoder.pkl").write_bytes(b"x")), "ELMoForManyLangs"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text('{"model_type": "bert"}')),
     "Hugging Face transformers model (bert)"),
])
def test_unsupported_family_is_named(tmp_path, make, words):
    path = tmp_path / "thing.pt"
    make(path)
    out = bilm("info", "--model", path)
    assert out.code == 2 and words in out.err and len(out.err.strip().splitlines()) == 1


# -- the catalogue and its download ------------------------------------------------------------

class _Server:
    """A local HTTP server of a folder, honouring Range requests; ``drop_after`` cuts the
    next response after that many bytes (a dropped connection)."""

    def __init__(self, root: Path) -> None:
        self.root, self.drop_after, self.requests = root, None, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.drop_after is not None:
                    body, server.drop_after = body[: server.drop_after], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    s = _Server(root)
    yield s
    s.close()


def _catalogue(tmp_path, monkeypatch, entries) -> None:
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(entries))
    monkeypatch.setenv("BILM_CATALOGUE", str(path))


def test_download_resumes_a_dropped_connection_and_names_work_as_paths(
        fixture_model, tmp_path, monkeypatch, server, cache):
    archive = nlpl_zip(fixture_model, server.root / "999.zip")
    _catalogue(tmp_path, monkeypatch, [{
        "name": "test-elmo", "family": "nlpl", "language": "English", "size": "tiny",
        "page": "http://example.org", "files": {"999.zip": f"{server.url}/999.zip"}}])
    listed = bilm("models").ok().out
    assert any(line.split()[:2] == ["test-elmo", "nlpl"] for line in listed.splitlines())
    server.drop_after = 5000
    out = bilm("download", "test-elmo").ok()
    final = cache / "models" / "test-elmo"
    assert out.out.strip() == str(final / "999.zip")
    assert (final / "999.zip").read_bytes() == archive.read_bytes()
    assert server.requests == [("/999.zip", None), ("/999.zip", "bytes=5000-")]
    assert not (cache / "models" / "test-elmo.download").exists()
    assert "downloaded" in bilm("models").ok().out
    # the name works wherever a path does
    text = tmp_path / "in.txt"
    text.write_text("The first sentence .\n")
    bilm("embed", text, tmp_path / "out.hdf5", "--model", "test-elmo").ok()
    bilm("embed", text, tmp_path / "plain.hdf5", "--options", fixture_model / "options.json",
         "--weights", fixture_model / "lm_weights.hdf5").ok()
    with h5py.File(tmp_path / "out.hdf5") as a, h5py.File(tmp_path / "plain.hdf5") as b:
        np.testing.assert_array_equal(a["0"][()], b["0"][()])
    assert len(server.requests) == 2  # from the cache, not downloaded again


def test_download_from_a_mirror(fixture_model, tmp_path, monkeypatch, server, cache):
    (server.root / "elmo-small").mkdir()
    shutil.copy(fixture_model / "options.json", server.root / "elmo-small" / "options.json")
    shutil.copy(fixture_model / "lm_weights.hdf5", server.root / "elmo-small" / "weights.hdf5")
    monkeypatch.setenv("BILM_MODELS_URL", server.url + "/")
    bilm("download", "elmo-small").ok()
    assert sorted(p for p, _ in server.requests) == ["/elmo-small/options.json",
                                                     "/elmo-small/weights.hdf5"]
    info = bilm("info", "--model", "elmo-small").ok().out
    assert "bilm-tf / AllenNLP ELMo" in info


def test_download_failures_leave_nothing_under_the_final_name(
        fixture_model, tmp_path, monkeypatch, server, cache):
    (server.root / "corrupt.zip").write_bytes(b"PK\x03\x04 not really a zip" * 100)
    nlpl_zip(fixture_model, server.root / "good.zip")
    size = (server.root / "good.zip").stat().st_size
    _catalogue(tmp_path, monkeypatch, [
        {"name": "corrupt", "family": "nlpl", "language": "-", "size": "-", "page": "-",
         "files": {"c.zip": f"{server.url}/corrupt.zip"}},
        {"name": "wrong-size", "family": "nlpl", "language": "-", "size": "-", "page": "-",
         "files": {"g.zip": f"{server.url}/good.zip"}, "sizes": {"g.zip": size + 1}},
        {"name": "missing", "family": "nlpl", "language": "-", "size": "-", "page": "-",
         "files": {"m.zip": f"{server.url}/missing.zip"}}])
    for name, words in (("corrupt", "not a readable zip"), ("wrong-size", "catalogue"),
                        ("missing", "404")):
        out = bilm("download", name)
        assert out.code == 2 and words in out.err, (name, out.err)
        assert len(out.err.strip().splitlines()) == 1
        assert not (cache / "models" / name).exists()
    assert not (cache / "models" / "corrupt.download").exists()
    unknown = bilm("download", "no-such-model")
    assert unknown.code == 2 and "bilm models" in unknown.err
    assert bilm("info", "--model", "no-such-model").code == 2


def test_download_of_an_unread_family_is_refused_before_downloading(
        tmp_path, monkeypatch, server, cache):
    _catalogue(tmp_path, monkeypatch, [
        {"name": "vectors", "family": "word2vec", "language": "-", "size": "-", "page": "-",
         "files": {"v.bin": f"{server.url}/v.bin"}}])
    assert "not read yet" in bilm("models").ok().out
    out = bilm("download", "vectors")
    assert out.code == 2 and "does not read yet" in out.err
    assert server.requests == [] and not os.path.exists(cache / "models")


@pytest.mark.slow
def test_allennlp_archive_as_a_model_embeds_scores_and_evaluates(tmp_path, cache):
    """--model model.tar.gz: imported once into the cache; embed equals AllenNLP's layers,
    evaluate and score its perplexity; an encoder-only model cannot score (one line)."""
    from tests.conftest import SHARED, need_shared

    fixture = need_shared(SHARED / "fixtures" / "allennlp-transformer")
    archive, sentences = fixture / "model.tar.gz", fixture / "sentences.txt"
    with h5py.File(fixture / "expected.hdf5") as f:
        expected = float(f.attrs["perplexity"])
        layers = [f[f"layers/{i}"][()] for i in range(2)]
    out = bilm("evaluate", "--model", archive, "--test-prefix", sentences).ok().out
    assert float(out.split("perplexity:")[1]) == pytest.approx(expected, rel=1e-3)
    out = bilm("score", sentences, "--model", archive, "--output", tmp_path / "s.tsv").ok().out
    assert float(out.split("corpus perplexity:")[1].split()[0]) == pytest.approx(expected,
                                                                                rel=1e-3)
    bilm("embed", sentences, tmp_path / "e.hdf5", "--model", archive).ok()
    with h5py.File(tmp_path / "e.hdf5") as f:
        for i in range(2):
            np.testing.assert_allclose(f[str(i)][1:], layers[i], rtol=0, atol=1e-5)
    assert len(list((cache / "allennlp").iterdir())) == 1  # imported once
    info = bilm("info", "--model", archive).ok().out
    assert "softmax: yes" in info and "AllenNLP language-model archive" in info
    both = bilm("score", sentences, "--model", archive, "--save-dir", tmp_path)
    assert both.code == 2 and "leave out --save-dir" in both.err


def test_an_encoder_only_model_cannot_score(fixture_model, tmp_path):
    archive = nlpl_zip(fixture_model, tmp_path / "999.zip")
    text = tmp_path / "in.txt"
    text.write_text("a sentence\n")
    out = bilm("score", text, "--model", archive)
    assert out.code == 2 and "without a softmax" in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_a_truncated_bilm_tf_folder_is_one_line(fixture_model, tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    shutil.copy(fixture_model / "options.json", folder)
    data = (fixture_model / "lm_weights.hdf5").read_bytes()
    (folder / "weights.hdf5").write_bytes(data[: len(data) // 2])
    out = bilm("info", "--model", folder)
    assert out.code == 2 and "weights.hdf5" in out.err and len(out.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_tfhub_tar_download_is_unpacked_and_a_linked_member_refused(
        tmp_path, monkeypatch, server, cache):
    import tarfile

    module = Path(__file__).parent / "data" / "tfhub" / "module"
    with tarfile.open(server.root / "elmo.tar.gz", "w:gz") as tar:
        tar.add(module, arcname=".")
    with tarfile.open(server.root / "evil.tar.gz", "w:gz") as tar:
        tar.add(module / "saved_model.pb", arcname="saved_model.pb")
        link = tarfile.TarInfo("variables")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    entry = {"family": "tfhub", "language": "-", "size": "-", "page": "-", "unpack": "tar"}
    _catalogue(tmp_path, monkeypatch, [
        {**entry, "name": "hub", "files": {"module.tar.gz": f"{server.url}/elmo.tar.gz"}},
        {**entry, "name": "evil", "files": {"module.tar.gz": f"{server.url}/evil.tar.gz"}}])
    path = bilm("download", "hub").ok().out.strip()
    assert path == str(cache / "models" / "hub" / "module")
    assert not (cache / "models" / "hub" / "module.tar.gz").exists()  # unpacked, removed
    info = bilm("info", "--model", "hub").ok().out
    assert "TF Hub v1 ELMo module" in info and "output mix: weights [0.3" in info
    out = bilm("download", "evil")
    assert out.code == 2 and "not a regular file or folder" in out.err
    assert not (cache / "models" / "evil").exists() and not Path("/etc/passwd.x").exists()


def test_the_dump_functions_take_a_model(fixture_model, tmp_path):
    from bilm import dump_bilm_embeddings, dump_token_embeddings

    archive = nlpl_zip(fixture_model, tmp_path / "999.zip")
    text = tmp_path / "in.txt"
    text.write_text("The first sentence .\nAnother one\n")
    dump_bilm_embeddings(None, text, outfile=tmp_path / "a.hdf5", model=archive,
                         stateful=False, progress=False)
    dump_bilm_embeddings(None, text, fixture_model / "options.json",
                         fixture_model / "lm_weights.hdf5", tmp_path / "b.hdf5",
                         stateful=False, progress=False)
    dump_token_embeddings(fixture_model / "vocab_test.txt", outfile=tmp_path / "t.hdf5",
                          model=archive, progress=False)
    with h5py.File(tmp_path / "a.hdf5") as a, h5py.File(tmp_path / "b.hdf5") as b:
        for key in ("0", "1"):
            np.testing.assert_array_equal(a[key][()], b[key][()])
    with h5py.File(tmp_path / "t.hdf5") as t:
        assert t["embedding"].shape[1] == 16 and np.abs(t["embedding"][()]).max() > 0.1
    with pytest.raises(ValueError, match="leave out options_file"):
        dump_token_embeddings(fixture_model / "vocab_test.txt", fixture_model / "options.json",
                              outfile=tmp_path / "x.hdf5", model=archive)
