"""Run under ``torchrun`` by tests/test_s3.py: each rank loads packed data from ``s3://`` (its
shard taken from torch.distributed) and writes the split indices of every step of every epoch
to ``<record>.rank<k>.json``. Usage: ``python -m tests.ranks_over_s3 URL BACKEND EPOCHS RECORD``."""

import json
import sys
from pathlib import Path

from dali_voc import load_data_voc
from dali_voc.loaders.distributed import process_group


def main(url: str, backend: str, epochs: int, record: Path) -> None:
    with process_group(use_cuda=False) as proc:
        options = dict(backend=backend, num_workers=1, verbose=False, return_meta=True, last_batch="partial")
        if backend == "dali":
            options["device"] = "cpu"
        train, _ = load_data_voc(2, (64, 96), root=url, **options)
        steps = []
        for epoch in range(epochs):
            train.set_epoch(epoch)
            steps.append([batch.ids.tolist() for batch in train])
        train.close()
        out = record.with_name(f"{record.name}.rank{proc.rank}.json")
        out.write_text(json.dumps({"rank": proc.rank, "world_size": proc.world_size, "batches": len(train),
                                   "epochs": steps}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
