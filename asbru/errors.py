"""Exceptions.  Every error a user can cause carries a one-line message naming what was
wrong and what is accepted; none of them needs a traceback to be understood."""
from __future__ import annotations


class AsbruError(RuntimeError):
    """Base class.  A ``RuntimeError`` so that Bifrost code catching RuntimeError still works."""


class ArgumentError(AsbruError, ValueError):
    """A bad argument: names the argument and the accepted values."""


class EndOfDataStop(AsbruError):
    """Raised by ring reads when writing has ended and no more data will come (Bifrost name)."""


class WouldBlock(AsbruError, IOError):
    """A non-blocking ring operation would have had to wait."""


class PermissionNeeded(AsbruError, PermissionError):
    """An operation needs a privilege (e.g. CAP_NET_RAW for the sniffer)."""


class CaptureWarning(UserWarning):
    """Something a capture could not do with the data it was given (one line, says what to
    change), e.g. packets never placed because the stream's rate was never learnt."""
