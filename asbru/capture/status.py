"""``recv()`` status codes with Bifrost's names and values (``BFpacketcapture_status``)."""
from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Members compare equal to Bifrost's plain ints (``status in (1, 4, 5, 6)`` works)."""
    STARTED = 0      # a sequence was begun
    ENDED = 1        # timeout / end of file while a sequence was open: it was committed and ended
    CONTINUED = 2    # progress (usually one gulp committed or opened)
    CHANGED = 3      # the stream's metadata changed: old sequence ended, new one begun
    NO_DATA = 4      # timeout / end of file (or bounded work spent) with no sequence open
    INTERRUPTED = 5  # the receive call failed with EINTR
    ERROR = 6        # the receive call failed otherwise


BF_CAPTURE_STARTED = Status.STARTED
BF_CAPTURE_ENDED = Status.ENDED
BF_CAPTURE_CONTINUED = Status.CONTINUED
BF_CAPTURE_CHANGED = Status.CHANGED
BF_CAPTURE_NO_DATA = Status.NO_DATA
BF_CAPTURE_INTERRUPTED = Status.INTERRUPTED
BF_CAPTURE_ERROR = Status.ERROR
