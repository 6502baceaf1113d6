"""Choosing the ``tf.distribute`` strategy: the one place that looks at devices and TF_CONFIG."""

from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

__all__ = ["device_summary", "is_chief", "make_strategy", "replica_device"]

logger = logging.getLogger(__name__)


def _cluster_configured() -> bool:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return False
    try:
        return bool(json.loads(raw).get("cluster"))
    except (ValueError, AttributeError):
        raise ValueError("TF_CONFIG is not a JSON object with 'cluster' and 'task'") from None


def device_summary() -> tuple[str, int]:
    """("GPU", n) when GPUs are visible, else ("CPU", n logical CPU devices)."""
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return "GPU", len(gpus)
    return "CPU", len(tf.config.list_logical_devices("CPU"))


def make_strategy(n_gpus: int = 1) -> tf.distribute.Strategy:
    """``MultiWorkerMirroredStrategy`` when TF_CONFIG names a cluster; else
    ``MirroredStrategy`` over ``n_gpus`` GPUs (CPU devices when there is no GPU), or
    ``OneDeviceStrategy`` for one."""
    if _cluster_configured():
        return tf.distribute.MultiWorkerMirroredStrategy()
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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().jobs:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().jobs
    return task_type == "worker" and task_id == 0 and not has_chief
