"""DALI's webdataset reader over packed shards (:mod:`dali_voc.datasets.packed`), in place of the
two file readers of :func:`dali_voc.loaders.pipeline.build_pipeline`.

One reader yields each sample's image bytes, label bytes and split index (its ``.id`` member)
together, so image and label are paired by construction. It reads the shards' paths or
``s3://`` URLs itself (DALI's AWS SDK: endpoint from ``AWS_ENDPOINT_URL``, credentials from
the AWS chain) through index files that list only the selected samples.

Order, as WebDataset and DALI do it for container files:

* **across shards**: with ``shuffle``, the order of the tar files is permuted after every epoch
  from ``config.seed`` (``shuffle_after_epoch``), the same permutation on every rank, so the
  ranks' contiguous blocks of one epoch still partition the selection; reads within a shard
  stay sequential;
* **within a rank's stream**: samples pass through a shuffle buffer of
  :data:`SHUFFLE_BUFFER` samples (``random_shuffle``, seeded with ``config.seed``), which mixes
  samples read close together (at most a rank's share); the packer already stored each split in a
  shuffled order.

Sharding: rank ``k`` of ``n`` reads the ``k``-th contiguous block of the epoch's sample stream,
so it opens about ``shards / n + 1`` tar objects per epoch, never all of them.
"""

from __future__ import annotations

from ..config import LoaderConfig
from ..datasets.packed import ShardPlan
from ..resolve import Resolved

#: Samples held by the reader's shuffle buffer (DALI's ``initial_fill``), at most the rank's
#: share of the selection. The buffer is filled before the first batch: with DALI's default of
#: 1024, the first batch from the loopback S3 server of the tests waited 8 s for 40 samples
#: read over and over; a smaller buffer starts sooner and mixes less.
SHUFFLE_BUFFER = 256


def read_shards(plan: ShardPlan, config: LoaderConfig, resolved: Resolved, shuffle: bool, name: str,
                samples: int):
    """DALI-graph: ``(image bytes, label bytes, split index)`` per sample from the shards of
    ``plan``: uint8 ``[n]``, uint8 ``[m]``, int32 ``[1]``, all CPU. A missing member is an error
    (DALI's ``missing_component_behavior="error"``), never an empty tensor. ``samples``: how
    many the plan selects (the shuffle buffer holds at most one rank's share)."""
    from nvidia.dali import fn, types

    args = dict(paths=list(plan.paths), index_paths=list(plan.index_paths), ext=list(plan.ext),
                dtypes=[types.UINT8, types.UINT8, types.INT32], missing_component_behavior="error", name=name,
                shard_id=resolved.shard_id, num_shards=resolved.num_shards, seed=config.seed,
                pad_last_batch=True)  # each epoch starts at its shard's start, as with the file readers
    if shuffle:
        args.update(shuffle_after_epoch=True, shuffle_after_epoch_seed=config.seed, random_shuffle=True,
                    initial_fill=max(1, min(SHUFFLE_BUFFER, samples // resolved.num_shards)))
    images, labels, ids = fn.readers.webdataset(**args)
    return images, labels, ids
