#!/usr/bin/env bash
# Creates benchmarks/peers/.venv with torch 2.13.0 (CPU), numpy, the peers (PyTorch Ignite,
# Lightning, Catalyst 22.4) and eventrunner (editable, from this checkout).
#
#   bash benchmarks/peers/setup_env.sh            # PYTHON=python3.11 bash ... to pick the interpreter
#
# It is not the project's venv and not CI's: nothing else uses it. A peer that fails to install
# does not stop the script; each outcome goes to install_status.tsv (name, ok|failed, version or
# reason), which compare.py reads to say why a peer has no numbers. Full pip output: install.log.
#
# Pins (constraints.txt) keep torch at 2.13.0 whatever a peer asks for. Catalyst 22.4 (April 2022)
# needs an accelerate older than 1.0: accelerate 1.x removed DistributedType.TPU, which Catalyst's
# engine reads at every loader end (AttributeError: TPU). accelerate 0.34.2, the last 0.x, works
# with torch 2.13 (0.27.2, 0.28.0 and 0.30.1 were also tried and work); nothing else needs pinning.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
PY="${PYTHON:-python3}"
STATUS="$HERE/install_status.tsv"
LOG="$HERE/install.log"
CONSTRAINTS="$HERE/constraints.txt"

# what each peer is installed as (tested versions in the comments)
TORCH_SPEC="torch==2.13.0"
IGNITE_SPEC="pytorch-ignite"                       # 0.5.5
LIGHTNING_SPEC="lightning"                         # 2.6.6
CATALYST_SPECS=("catalyst==22.4" "accelerate==0.34.2")

: >"$LOG"
: >"$STATUS"
log() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$STATUS"; log "[$1] $2 $3"; }
pipi() { "$VENV/bin/python" -m pip install --disable-pip-version-check -c "$CONSTRAINTS" "$@" >>"$LOG" 2>&1; }
last_error() { grep -E "ERROR|Error|error:" "$LOG" | tail -1 | cut -c1-200 | tr '\t' ' '; }
version_of() { "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PY"
    "$PY" -m venv "$VENV" || { log "cannot create the venv with $PY"; exit 1; }
fi

log "installing $TORCH_SPEC (CPU wheel) and numpy"
if ! pipi "$TORCH_SPEC" numpy; then
    record torch failed "$(last_error)"
    log "torch did not install: nothing can run"; exit 1
fi
record torch ok "$(version_of torch)"
record numpy ok "$(version_of numpy)"

# name, import check, pip specs...
install_peer() {
    local name="$1" check="$2"; shift 2
    log "installing $name: $*"
    if ! pipi "$@"; then
        record "$name" failed "pip install $* failed: $(last_error)"; return 0
    fi
    local err
    if ! err="$("$VENV/bin/python" -W ignore -c "$check" 2>&1)"; then
        record "$name" failed "installed but '$check' fails: $(printf '%s' "$err" | tail -1 | cut -c1-200)"
        return 0
    fi
    record "$name" ok "$(version_of "$name")"
}

install_peer pytorch-ignite "import ignite.engine, ignite.metrics" "$IGNITE_SPEC"
install_peer lightning "import lightning.pytorch" "$LIGHTNING_SPEC"
install_peer catalyst "from catalyst import dl" "${CATALYST_SPECS[@]}"
if grep -q "^catalyst	ok" "$STATUS"; then record accelerate ok "$(version_of accelerate)"; fi

if [ -f "$REPO/pyproject.toml" ] || [ -f "$REPO/setup.py" ]; then
    install_peer eventrunner "import eventrunner; eventrunner.SupervisedRunner" -e "$REPO"
else
    record eventrunner failed "no pyproject.toml in $REPO yet: rerun this script once it exists"
fi

# a peer must not have swapped torch for another build
tv="$(version_of torch)"
if [ "$tv" != "2.13.0+cpu" ] && [ "$tv" != "2.13.0" ]; then
    log "WARNING: torch is now '$tv', not 2.13.0 (CPU): check install.log"
fi
log "done; status in $STATUS:"
cat "$STATUS" >&2
