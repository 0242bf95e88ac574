#!/bin/bash
# A new user's first hour, replayed (issue 12; `make fresh-check`, not part of `make test`).
#
# Builds a freshly installed Debian 12 (`debootstrap --variant=minbase bookworm`), enters it
# with its own mount and pid namespaces and pivot_root (not chroot: a chrooted process
# cannot create user namespaces, and the sandbox needs them), and there follows the README
# word for word: `apt-get install -y git make ca-certificates`, a clone of this checkout's
# HEAD into /root/project, `make test` RUNS times in a row, then the README's quick start
# (its own clone, `make run` in the background) and every example of "In a new terminal",
# each step from a new login shell in $HOME. Prints PASS/FAIL per step; exits 1 if any step
# failed, 2 on bad arguments or when not root.
#
# Only the package registries are reachable from this machine: its apt sources, its pip
# configuration (files and PIP_* variables) and its extra CA certificates are copied in, so
# apt and pip inside work as they do outside. Nothing else of the host is.
set -euo pipefail
# All in one block, read before it runs: editing this file (say, a new commit) while a
# check runs must not change what the running check does.
{

usage() {
    cat <<EOF
usage: tests/fresh_check.sh [--runs N] [--cache DIR] [--keep] [--help]

  --runs N     how many times in a row to run 'make test' (default 3)
  --cache DIR  where the pristine debootstrap tree and the run's root live
               (default /var/cache/bitcoin-supervisor/fresh-check; the first run
               debootstraps, later runs copy the cached tree)
  --keep       keep the run's root filesystem afterwards (logs stay either way)

Tests this checkout's HEAD (commit first: uncommitted changes are not cloned).
Must run as root. Logs: CACHE/logs/<step>.log
EOF
}

RUNS=3
CACHE=/var/cache/bitcoin-supervisor/fresh-check
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) [ $# -ge 2 ] && [[ "$2" =~ ^[1-9][0-9]*$ ]] \
                    || { echo "fresh_check: --runs needs a positive number" >&2; exit 2; }
                RUNS=$2; shift 2 ;;
        --cache) [ $# -ge 2 ] && [ -n "$2" ] \
                    || { echo "fresh_check: --cache needs a directory" >&2; exit 2; }
                 CACHE=$(realpath -m -- "$2"); shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "fresh_check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "fresh_check: must run as root (debootstrap, mount namespaces, pivot_root)" >&2
    exit 2
fi

SRC=$(cd "$(dirname "$0")/.." && pwd)
BASE=$CACHE/bookworm-minbase          # pristine, reused across runs
ROOT=$CACHE/root                      # this run's system, made from BASE
LOGS=$CACHE/logs
MIRROR=http://deb.debian.org/debian
mkdir -p "$CACHE" "$LOGS"
rm -f "$LOGS"/*.log

say() { printf '%s  %s\n' "$(date -u +%H:%M:%S)" "$*"; }

if [ ! -e "$BASE/.complete" ]; then
    if ! command -v debootstrap >/dev/null; then
        say "installing debootstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap \
            >"$LOGS/debootstrap-install.log" 2>&1
    fi
    say "debootstrap --variant=minbase bookworm (first run only; log $LOGS/debootstrap.log)"
    rm -rf "$BASE"
    debootstrap --variant=minbase bookworm "$BASE" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 \
        || { tail -n 30 "$LOGS/debootstrap.log"; echo "fresh_check: debootstrap failed"; exit 1; }
    touch "$BASE/.complete"
fi

say "making a fresh root from the cached tree: $ROOT"
rm -rf "$ROOT"
cp -a "$BASE" "$ROOT"
rm -f "$ROOT/.complete"

# What makes apt and pip reach the registries from this machine, and nothing more.
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && cp "$f" "$ROOT$f"
done
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
for d in .config/pip .pip; do
    [ -d "$HOME/$d" ] && mkdir -p "$ROOT/root/$d" && cp -a "$HOME/$d/." "$ROOT/root/$d/"
done
mkdir -p "$ROOT/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
# Local package indexes the pip configuration names (find-links, file:// indexes) are
# registries too: shown read-only at their own paths.
PIP_ENV=$(env | grep -E '^PIP_[A-Z_]+=' || true)
PIP_DIRS=$(for p in $( { cat /etc/pip.conf "$HOME"/.config/pip/pip.conf "$HOME"/.pip/pip.conf \
                         2>/dev/null; echo "$PIP_ENV"; } | grep -oE '(file://)?/[^ ]+' \
                       | sed 's|^file://||; s|/simple/*$||' | sort -u); do
               [ -d "$p" ] && echo "$p"; done || true)

# The steps, run inside by PID 1 of the new pid namespace; each one in a new login shell
# in $HOME with a clean environment, as a new terminal would be.
cat >"$ROOT/fresh-steps.sh" <<'STEPS'
#!/bin/bash
runs=$1
failed=0
shell() {  # a new terminal: login shell, clean environment, in $HOME
    env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        $(cat /fresh-pip-env) bash -l -c "cd; $1"
}
step() {  # step NAME COMMAND: PASS/FAIL with the time it took, output in the step's log
    local name=$1 start=$SECONDS rc=0
    shell "$2" >"/fresh-logs/$name.log" 2>&1 || rc=$?
    if [ $rc = 0 ]; then
        echo "PASS  $name ($((SECONDS - start)) s)"
    else
        echo "FAIL  $name (exit $rc, $((SECONDS - start)) s): last lines of its log:"
        tail -n 25 "/fresh-logs/$name.log" | sed 's/^/      | /'
        failed=1
    fi
    return $rc
}
# README, Quick start: the packages a fresh Debian 12 needs first.
step apt 'apt-get update && apt-get install -y git make ca-certificates && update-ca-certificates' \
    || exit 1
step clone 'git clone /fresh-source.bundle /root/project' || exit 1
for i in $(seq 1 "$runs"); do
    step "make-test-$i" 'cd /root/project && make test' || true
done
# README, Quick start, literally: its own clone, `make run` (in the background here).
step quickstart-clone 'git clone /fresh-source.bundle /opt/bitcoin-supervisor' || exit 1
shell 'cd /opt/bitcoin-supervisor && exec make run' >/fresh-logs/make-run.log 2>&1 &
run=$!
# The system is up when every component is active (the first `make run` installs
# everything first). A maintainer's script may poll: a new shell has no event to wait on.
step wait-for-daemon 'for i in $(seq 1 1200); do
    PATH=/opt/bitcoin-supervisor/.venv/bin:$PATH /fresh-all-active && exit 0
    kill -0 '"$run"' 2>/dev/null || exit 1; sleep 1; done; exit 1' || true
# README, "In a new terminal, from any directory": every example, each in a new shell.
step readme-link 'ln -sf /opt/bitcoin-supervisor/.venv/bin/bitcoin-supervisor /usr/local/bin/'
step readme-status 'bitcoin-supervisor status'
step readme-status-json 'bitcoin-supervisor status --json'
step readme-getblockhash '[ "$(bitcoin-supervisor rpc getblockhash 0)" = 0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206 ]'
step readme-createwallet 'bitcoin-supervisor rpc createwallet alice'
step readme-generate 'addr=$(bitcoin-supervisor rpc --wallet alice getnewaddress) && bitcoin-supervisor rpc generatetoaddress 101 "$addr"'
step readme-getbalance '[ "$(bitcoin-supervisor rpc --wallet alice getbalance)" = 50.00000000 ]'
step readme-restart-wallet 'before=$(/fresh-pids) && bitcoin-supervisor restart wallet \
    && after=$(/fresh-pids) && echo "before: $before" && echo "after:  $after" \
    && [ "$(diff <(echo "$before" | tr " " "\n") <(echo "$after" | tr " " "\n") | grep -c "^[<>]")" = 2 ] \
    && diff <(echo "$before" | tr " " "\n") <(echo "$after" | tr " " "\n") | grep -q "^> wallet="'
step readme-stop-start-index 'bitcoin-supervisor stop index; bitcoin-supervisor start index'
# README, Sandboxing: the policy commands and `sandbox run`, whose probe must be killed
# (exit non-zero) for `socket`; in this pid namespace the kernel's audit records cannot be
# matched, and the message must say so instead.
step readme-policy-show 'bitcoin-supervisor policy show wallet'
step readme-policy-check 'bitcoin-supervisor policy check /opt/bitcoin-supervisor/policies/wallet.toml'
step readme-policy-test 'bitcoin-supervisor policy test'
step readme-sandbox-run 'out=$(bitcoin-supervisor sandbox run --role wallet -- python3 -c "import socket; socket.socket()" 2>&1); rc=$?; echo "$out"; [ $rc != 0 ] && echo "$out" | grep -qE "syscall socket|syscall unknown: running in a pid namespace"'
step readme-version 'bitcoin-supervisor --version'
step readme-shutdown 'bitcoin-supervisor shutdown'
if wait "$run"; then
    echo "PASS  make-run (exited 0 after shutdown)"
else
    echo "FAIL  make-run (exit $?): last lines of its log:"
    tail -n 25 /fresh-logs/make-run.log | sed 's/^/      | /'
    failed=1
fi
exit $failed
STEPS
cat >"$ROOT/fresh-pids" <<'PIDS'
#!/bin/sh
# "name=pid ..." of every component, from `status --json`.
bitcoin-supervisor status --json | python3 -c 'import json, sys
print(" ".join("%s=%s" % (c["name"], c["pid"]) for c in json.load(sys.stdin)["components"]))'
PIDS
cat >"$ROOT/fresh-all-active" <<'ACTIVE'
#!/bin/sh
# Exit 0 when the daemon answers and every component is active.
bitcoin-supervisor status --json 2>/dev/null | python3 -c 'import json, sys
sys.exit(0 if all(c["state"] == "active" for c in json.load(sys.stdin)["components"]) else 1)'
ACTIVE
chmod 0755 "$ROOT/fresh-steps.sh" "$ROOT/fresh-pids" "$ROOT/fresh-all-active"
printf '%s\n' "$PIP_ENV" >"$ROOT/fresh-pip-env"
git -C "$SRC" bundle create "$ROOT/fresh-source.bundle" HEAD "$(git -C "$SRC" symbolic-ref -q HEAD || echo HEAD)" \
    2>"$LOGS/bundle.log"
say "testing $(git -C "$SRC" rev-parse --short HEAD) ($(git -C "$SRC" log -1 --format=%s | cut -c1-60))"
mkdir -p "$ROOT/fresh-logs"

# Enter: own mount and pid namespaces; proc, sys, dev and a tmpfs /run as a booted system
# has them; pivot_root into the new root and drop the old one, then PID 1 runs the steps
# (and, being PID 1, reaps whatever they orphan).
ENTER=$(cat <<'ENTER'
set -eu
root=$1 runs=$2; shift 2
mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
for d in "$@"; do
    mkdir -p "$root$d" && mount --bind "$d" "$root$d" && mount -o remount,bind,ro "$root$d"
done
cd "$root"
mkdir -p .old-root
pivot_root . .old-root
umount -l /.old-root
rmdir /.old-root
exec /fresh-steps.sh "$runs"
ENTER
)
say "entering the fresh system (unshare --mount --pid --fork, pivot_root); make test x$RUNS"
rc=0
# shellcheck disable=SC2086  # PIP_DIRS: one path a word
unshare --mount --pid --fork bash -c "$ENTER" fresh-enter "$ROOT" "$RUNS" $PIP_DIRS \
    2>&1 | tee "$LOGS/summary.log" || rc=1
cp -a "$ROOT/fresh-logs/." "$LOGS/" 2>/dev/null || true
[ "$KEEP" = 1 ] || rm -rf "$ROOT"
if [ $rc = 0 ]; then say "fresh check: every step passed (logs: $LOGS)"; else
    say "fresh check: FAILED (logs: $LOGS)"; fi
exit $rc
}
