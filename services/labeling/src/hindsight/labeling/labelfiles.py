"""``labels/{trade_id}_label.json``: written atomically (tmp file, fsync, rename)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from hindsight.common.errors import InvalidInputError
from hindsight.labeling.domain.labels import LabelRecord

__all__ = ["label_path", "valid_trade_id", "write_label_file"]

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$")


def valid_trade_id(trade_id: str) -> bool:
    """Usable in a file name: 1-200 of ``A-Z a-z 0-9 . _ : @ -``, no ``..`` (see label_path)."""
    return _SAFE_ID.fullmatch(trade_id) is not None and ".." not in trade_id


def label_path(labels_dir: Path, trade_id: str) -> Path:
    """The file of a trade; trade ids that could escape the directory are refused."""
    if not valid_trade_id(trade_id):
        raise InvalidInputError("not usable in a file name", field="trade_id")
    return labels_dir / f"{trade_id}_label.json"


def write_label_file(labels_dir: Path, record: LabelRecord) -> Path:
    """Write the record so a reader sees the old file or the new one, never half of one."""
    path = label_path(labels_dir, record.trade_id)
    labels_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = (json.dumps(record.to_dict(), ensure_ascii=False, indent=2) + "\n").encode()
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename is durable only once the directory entry is on disk.
    dir_fd = os.open(labels_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
