#!/usr/bin/env bash
# Install what the interop tests compare asbru against; every step is optional.
#   tools/install-interop.sh VENV_BIN LSL3_DIR
# 1. Debian packages (root only): LSL's build needs GSL, FFTW, pkg-config and a compiler;
#    tshark decodes pcaps with the generated Wireshark dissector.
# 2. asbru[interop] (LSL 4, baseband) into the venv.
# 3. LSL 3.0.8 (the last LSL with a TBF reader) into LSL3_DIR, used by a subprocess only.
# A step that fails is reported and skipped; the tests needing it skip with the reason.
set -u
bin=${1:-.venv/bin}
lsl3=${2:-.venv/lsl3}
t0=$(date +%s)
step() { echo "install-interop: $*"; }
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq >/dev/null 2>&1 &&
       apt-get install -y -qq --no-install-recommends libgsl-dev libfftw3-dev pkg-config g++ tshark >/dev/null 2>&1; then
        step "Debian packages installed ($(( $(date +%s) - t0 )) s)"
    else
        step "apt-get failed: LSL may not build, tshark may be missing"
    fi
else
    step "no apt-get or not root: Debian packages not installed"
fi
t1=$(date +%s)
if "$bin/pip" install -q -e '.[interop]' >/dev/null 2>&1; then
    step "lsl and baseband installed ($(( $(date +%s) - t1 )) s)"
else
    step "pip install '.[interop]' failed: the LSL/baseband tests will skip"
fi
t2=$(date +%s)
if [ -f "$lsl3/lsl/reader/tbf.py" ] ||
   "$bin/pip" install -q --no-deps --target "$lsl3" 'lsl==3.0.8' pytz >/dev/null 2>&1; then
    step "LSL 3 (TBF reader) in $lsl3 ($(( $(date +%s) - t2 )) s)"
else
    rm -rf "$lsl3"
    step "LSL 3 failed to install: the TBF interop tests will skip"
fi
step "done in $(( $(date +%s) - t0 )) s"
exit 0
