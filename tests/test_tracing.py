"""bilm's graphs are traced without AutoGraph: their code has no Python control flow on
tensors (loops are tf.while_loop / tf.cond), and AutoGraph's conversion of its source was
~4 s of every training process's first step (py-spy, small shape, 2026-12-03). A function
converted once stays cached for the process, so this runs in a fresh one."""

import json
import subprocess
import sys
import textwrap

from tests.conftest import ROOT, TINY_ONE_LAYER_OPTIONS

SCRIPT = textwrap.dedent("""
    import json, sys
    from tensorflow.python.autograph.pyct import transpiler

    converted = []
    original = transpiler.PyToPy.transform_function

    def counted(self, fn, user_context):
        converted.append(f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}")
        return original(self, fn, user_context)

    transpiler.PyToPy.transform_function = counted

    from pathlib import Path
    from bilm import BidirectionalLanguageModel
    from bilm.evaluation import evaluate_run, score_sentences
    from bilm.training.runs import load_run, start_training
    from tests.conftest import make_model_files

    tmp, options = Path(sys.argv[1]), json.loads(sys.argv[2])
    text = "the cat sat on the mat . the dog ate the cat .\\n" * 40
    (tmp / "train").mkdir()
    (tmp / "train" / "a.txt").write_text(text)
    (tmp / "vocab.txt").write_text("<S>\\n</S>\\n<UNK>\\n" + "\\n".join(sorted(set(text.split()))))
    start_training(str(tmp / "run"), options, str(tmp / "train" / "*"), str(tmp / "vocab.txt"),
                   n_batches=2, seed=1, checkpoint_minutes=None, progress=False)
    perplexity = evaluate_run(str(tmp / "run"), str(tmp / "train" / "*"), batch_size=4,
                              progress=False)
    loaded = load_run(str(tmp / "run"))
    scores = list(score_sentences(loaded.lm, loaded.vocab, [["the", "cat"]]))
    options_file, weight_file = make_model_files(tmp / "model", options)
    for stateful in (True, False):
        lm = BidirectionalLanguageModel(options_file, weight_file, stateful=stateful)
        lm(lm.batcher.batch_sentences([["the", "cat"]]))
        embedded = list(lm.embed_sentences([["the", "cat"], ["a"]]))
    print(json.dumps({"converted": converted, "perplexity": perplexity,
                      "logprob": scores[0].logprob_forward,
                      "embedded": float(embedded[0].sum())}))
""")


def test_training_evaluation_and_embedding_trace_without_autograph(tmp_path):
    options = {**TINY_ONE_LAYER_OPTIONS, "batch_size": 4, "unroll_steps": 5,
               "n_negative_samples_batch": 8, "jit_compile": True}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), json.dumps(options)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # the work ran (finite figures), and AutoGraph converted none of bilm's functions
    assert 1.0 < result["perplexity"] < 1e6 and result["logprob"] < 0.0
    assert result["embedded"] != 0.0
    ours = [name for name in result["converted"] if name.startswith(("bilm", "tests"))]
    assert ours == [], ours
