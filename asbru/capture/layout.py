"""Index constants shared by the compiled capture loop and the Python state machine.

The compiled loop and Python talk through a handful of small int64 arrays (so that one
call into compiled code needs no Python objects); these names say which element is what.
Plain ints: numba freezes module-level ints as constants, and the generated kernel modules
list this module as a dependency so that editing it invalidates their cache.
"""
from __future__ import annotations

# --- rst: receive-buffer state --------------------------------------------------------
R_POS = 0      # index of the next unconsumed packet in the receive buffer
R_COUNT = 1    # packets currently in the receive buffer
R_NPEND = 2    # placements deferred to place_row (rows of ``pend``); 0 whenever Python runs
NRST = 4

# --- hst: hold-buffer state -----------------------------------------------------------
H_N = 0        # entries in the hold buffer
H_POS = 1      # active mode: next entry to drain
H_GPOS = 2     # gather mode: entries already examined
H_NVALID = 3   # gather mode: VALID entries seen
NHST = 4

# --- win: window / sequence state -----------------------------------------------------
W_MODE = 0       # MODE_GATHER (no sequence) or MODE_ACTIVE
W_S = 1          # start seq of the oldest open gulp
W_K = 2          # open gulps (0, 1, 2)
W_N = 3          # gulp length in time slots (buffer_ntime)
W_NSRC = 4
W_P = 5          # payload bytes per packet of the current sequence
W_LAST = 6       # largest seq placed in the current sequence
W_GMIN = 7       # gather result: seq0 (smallest seq of the held VALID packets)
W_BUDGET = 8     # packets one call may consume before returning (bounded work)
W_MAXJUMP = 9    # forward jump (in gulps beyond the window) that restarts the sequence
W_BACKRUN = 10   # current run of packets late by more than two gulps
W_BACKTHRESH = 11  # run length that restarts the sequence (backward jump)
W_NOFETCH = 12   # 0: receive; 1: only finish the hold buffer; 2: hold + receive buffer, no receive
W_SC = 13        # seq of the packet that reported a change
W_GTARGET = 14   # VALID packets to gather before a sequence starts (nsrc; 2*nsrc+1 for a change)
W_VOTE = 15      # 1: the gather confirms a change (held packets vote; ref = open config)
W_NEWCFG = 16    # result of the vote: 1 = the new configuration won
W_PLACED0 = 17   # packets placed in the window's first open gulp (W_PLACED0 + 1: the second)
W_FAR_N = 19     # packets far ahead of the window kept in the far stash (agreeing with W_FAR_SEQ)
W_FAR_SEQ = 20   # seq of the first of them: the window moves only when FAR_NEED agree
W_FARGO = 21     # 1: the stream agreed on a far-ahead position; advance until a packet lands
W_FAR_REPLAY = 22  # 1 + the far-stash entry to process next (0 = not replaying)
NWIN = 24

# A packet more than one gulp beyond the window is "far ahead": it moves the window only when
# FAR_NEED packets within one gulp of each other agree (the first FAR_NEED - 1 wait in the
# last FAR_STASH rows of the hold buffer, then are placed in arrival order)
FAR_NEED = 3
FAR_STASH = FAR_NEED - 1

MODE_GATHER = 0
MODE_ACTIVE = 1

# --- reasons the compiled loop returns ------------------------------------------------
RS_START = 1      # gather complete: Python begins a sequence (seq0 = win[W_GMIN], desc = cur)
RS_ADVANCE = 2    # pending packet beyond the window: commit the oldest / reserve a gulp
RS_CHANGE = 3     # pending packet changes a CHANGE field
RS_JUMP = 4       # pending packet too far ahead: end the sequence, restart at it
RS_BACKJUMP = 5   # sustained run of far-late packets: end the sequence, restart
RS_TIMEOUT = 6
RS_EOF = 7        # end of file / socket shut down
RS_INTR = 8
RS_ERROR = 9
RS_BUDGET = 10    # bounded-work limit reached
RS_DRAINED = 11   # W_NOFETCH and nothing left to process
RS_FAR = 99       # internal to the compiled loop (never returned): a packet far ahead

# --- backend fetch() results (>= 1: packets received) ---------------------------------
F_TIMEOUT = -1
F_EOF = -2
F_INTR = -3
F_ERROR = -4

# --- cnt: counters --------------------------------------------------------------------
C_NVALID = 0
C_NVALID_BYTES = 1
C_NINVALID = 2
C_NINVALID_BYTES = 3
C_NLATE = 4
C_NLATE_BYTES = 5
C_NDUP = 6
C_NDUP_BYTES = 7
C_NGOOD_BYTES = 8
C_NMISSING_BYTES = 9
C_NKDROPS = 10      # kernel drops, cumulative (SO_MEMINFO read by Python, else SO_RXQ_OVFL)
C_KDROP_LAST = 11   # last raw SO_RXQ_OVFL value seen (-1 none)
C_ERRNO = 12        # errno of the last failed receive
C_NRECEIVED = 13    # packets handed over by the backend
C_NRESYNC = 14      # disk: times the record alignment was found again after a bad record
C_NSKIPPED_BYTES = 15  # disk: bytes from the start of those bad records to the resync point
C_NUNLEARNED = 16   # of C_NINVALID: came while the format learnt its rate, never placed
NCNT = 20

# --- psrc rows: per-source packet counters --------------------------------------------
PS_VALID = 0
PS_LATE = 1
PS_DUP = 2
PS_MISSING = 3    # time slots committed without a packet from this source
NPS = 4

# --- io: backend parameters -----------------------------------------------------------
IO_FD = 0
IO_ADDR = 1       # UDP: address of the mmsghdr array; disk: address of the receive buffer
IO_NMSG = 2       # UDP: messages per recvmmsg
IO_POLL_MS = 3    # UDP: -2 = blocking fd, no poll; else poll() this long (ms, -1 = forever) first
IO_POLLFD = 4     # scratch: one struct pollfd
IO_OFFSET = 5     # disk: bytes read from the descriptor by this capture
IO_POLLFD_ADDR = 6  # address of io[IO_POLLFD]
IO_FILL = 7       # disk: bytes in the receive buffer after the last read (whole rows + tail)
IO_CARRY_OFF = 8  # disk: buffer offset of bytes kept for the next fetch (partial record or
IO_CARRY_LEN = 9  #   the records after a resync point), and how many
IO_SCAN_END = 10  # disk: buffer offset before which no record start decodes (resync scan)
# UDP: packets drained from the socket while the loop was compiled (asbru/capture/staging.py),
# handed out by _fetch before anything newer; rows of IO_STAGE_ROW bytes at IO_STAGE_ADDR,
# their lengths (int64, receive-buffer convention) at IO_STAGE_LENS
IO_STAGE_ADDR = 11
IO_STAGE_LENS = 12
IO_STAGE_ROW = 13
IO_STAGE_N = 14   # packets staged
IO_STAGE_POS = 15  # packets already handed to the loop
# disk: the receive buffer's first DISK_BACK_ROWS rows keep the bytes that came just before
# the batch (so a resync of the batch's first records sees the records before them): how
# many of those bytes are stream bytes (0 after the start or a seek)
IO_BACK = 16
IO_NEED = 17      # disk: bytes the next fetch must hold before it returns (0: one record)
IO_EOF = 18       # disk: 1 if the last fetch met the end of the input
NIO = 19
DISK_BACK_ROWS = 2
