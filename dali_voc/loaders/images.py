"""Reading image files on the CPU (PIL), shared by the reference path, the DALI loader's error
naming and the CLI."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from ..storage.members import read_source
from ..errors import SampleDecodeError


def read_rgb(path: os.PathLike | str) -> np.ndarray:
    """Decode an image file to uint8 RGB ``[H, W, 3]`` (gray, CMYK and palette converted).

    Raises:
        SampleDecodeError: naming the file, when it cannot be decoded.
    """
    try:
        with Image.open(io.BytesIO(read_source(path))) as im:  # a file, or a packed shard's member
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:
        raise SampleDecodeError(f"cannot decode {path}: {err}") from err
