"""Choosing the ``tf.distribute`` strategy: the one place that looks at devices, TF_CONFIG and
SLURM.

- ``TF_CONFIG`` naming a cluster (by hand, Kubernetes, ``bilm launch``): TensorFlow's
  ``MultiWorkerMirroredStrategy``, its resolver reading TF_CONFIG;
- a SLURM job step of several tasks (``srun``), without TF_CONFIG: the same strategy with
  TensorFlow's ``SlurmClusterResolver``;
- otherwise ``MirroredStrategy`` over ``n_gpus`` local GPUs (CPU devices without a GPU), or
  ``OneDeviceStrategy`` for one.

No cluster code of ours: TensorFlow's resolvers, collectives and coordination service. A
worker that dies makes the others' collectives fail after ``collective_timeout`` seconds at
most (TensorFlow's communication options), never hang forever.
"""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

__all__ = ["DEFAULT_COLLECTIVE_TIMEOUT", "chief_value", "cluster_configured", "device_summary",
           "is_chief", "is_multi_worker", "make_strategy", "n_workers", "replica_device",
           "worker_index"]

logger = logging.getLogger(__name__)

# Seconds a collective (a gradient all-reduce) may wait for the other workers. Generous: the
# first step of a large model compiles for minutes on some workers before they join in.
DEFAULT_COLLECTIVE_TIMEOUT = 600.0


def _tf_config_cluster() -> bool:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return False
    try:
        return bool(json.loads(raw).get("cluster"))
    except (ValueError, AttributeError):
        raise ValueError("TF_CONFIG is not a JSON object with 'cluster' and 'task'") from None


def _slurm_job_step() -> bool:
    return int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1"))
               or 1) > 1 and "SLURM_PROCID" in os.environ


def cluster_configured() -> str | None:
    """``"tf_config"``, ``"slurm"`` or None (one machine)."""
    if _tf_config_cluster():
        return "tf_config"
    if _slurm_job_step():
        return "slurm"
    return None


def device_summary() -> tuple[str, int]:
    """("GPU", n) when GPUs are visible, else ("CPU", n logical CPU devices)."""
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return "GPU", len(gpus)
    return "CPU", len(tf.config.list_logical_devices("CPU"))


def make_strategy(n_gpus: int = 1, collective_timeout: float | None = None,
                  ) -> tf.distribute.Strategy:
    """The strategy for this process (see the module doc). ``n_gpus`` applies on one
    machine; a worker of a cluster replicates over every GPU it sees (restrict them with
    CUDA_VISIBLE_DEVICES). ``collective_timeout``: seconds (default
    :data:`DEFAULT_COLLECTIVE_TIMEOUT`)."""
    cluster = cluster_configured()
    if cluster is not None:
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout or DEFAULT_COLLECTIVE_TIMEOUT)
        resolver = None
        if cluster == "slurm":
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options)
        logger.info("worker %d of %d (%s), %d replicas in all", worker_index(strategy),
                    n_workers(strategy), cluster, strategy.num_replicas_in_sync)
        return strategy
    kind, count = device_summary()
    if n_gpus > count:
        raise ValueError(f"n_gpus={n_gpus} but only {count} {kind} device(s) are visible")
    devices = [d.name for d in tf.config.list_logical_devices(kind)]
    if n_gpus <= 1:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(devices[:n_gpus])


def replica_device() -> str:
    """The first GPU if any, else the first CPU: where single-device work runs."""
    kind, _ = device_summary()
    return tf.config.list_logical_devices(kind)[0].name


def _resolver(strategy: tf.distribute.Strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().jobs:
        return None
    return resolver


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return _resolver(strategy) is not None


def worker_index(strategy: tf.distribute.Strategy) -> int:
    resolver = _resolver(strategy)
    return 0 if resolver is None else int(resolver.task_id or 0)


def n_workers(strategy: tf.distribute.Strategy) -> int:
    resolver = _resolver(strategy)
    if resolver is None:
        return 1
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster (the chief:
    the 'chief' task, else worker 0): only the chief writes into a run."""
    resolver = _resolver(strategy)
    if resolver is None:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().jobs
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def chief_value(strategy: tf.distribute.Strategy, value: int) -> int:
    """The chief's ``value`` (an integer of at most 63 bits), on every worker of a cluster:
    what each worker picked for itself (a seed drawn at random) replaced by the chief's. A
    collective: every worker must call it, at the same point. One process: ``value``."""
    if not is_multi_worker(strategy):
        return value
    mine = int(value) if is_chief(strategy) else 0

    def contribution() -> tf.Tensor:
        # the chief's first replica (replica 0: replicas are numbered from the chief on)
        first = tf.distribute.get_replica_context().replica_id_in_sync_group
        return tf.where(tf.equal(first, 0), tf.constant(mine, tf.int64),
                        tf.constant(0, tf.int64))

    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(contribution), axis=None)
    return int(total)
