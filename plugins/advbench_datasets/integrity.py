"""A cheap integrity check of one image file, without decoding it: signature and end marker.

Catches what a download usually gets wrong (empty, truncated, not an image at all) at the cost of
reading a few kilobytes per file; :func:`advbench_datasets.common.verify_images` runs it once per
dataset fingerprint.
"""

from __future__ import annotations

from advbench_datasets.errors import DatasetError
from advbench_datasets.folders import File

TAIL_BYTES = 4096  # a JPEG's end-of-image marker / a PNG's IEND chunk must lie in this many last bytes
JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_image(dataset: str, file: File) -> None:
    """Cheap integrity check without decoding: a JPEG or PNG signature and its end marker.

    Catches empty files, non-images with an image extension and truncated downloads (the usual
    corruption); a file damaged in the middle is left to the decoder.
    """
    if file.size == 0:
        raise DatasetError(dataset, f"empty image file {file.path}")
    try:
        with open(file.path, "rb") as fh:
            head = fh.read(8)
            fh.seek(max(0, file.size - TAIL_BYTES))
            tail = fh.read()
    except OSError as exc:
        raise DatasetError(dataset, f"cannot read image {file.path}: {exc.strerror}") from None
    if head.startswith(JPEG_SOI):
        if JPEG_EOI not in tail:
            raise DatasetError(dataset, f"truncated or corrupt JPEG {file.path} (no end-of-image marker)")
    elif head.startswith(PNG_SIGNATURE):
        if b"IEND" not in tail:
            raise DatasetError(dataset, f"truncated or corrupt PNG {file.path} (no IEND chunk)")
    else:
        raise DatasetError(dataset, f"not a JPEG or PNG image: {file.path}")
