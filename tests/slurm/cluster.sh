#!/usr/bin/env bash
# A single-node SLURM cluster from Debian's packages, for the tests and for trying
# `bnbench run -m hydra/launcher=slurm ...` on a laptop. As root:
#
#   eval "$(tests/slurm/cluster.sh up)"   # prints: export SLURM_CONF=/tmp/bnbench-slurm.XXXXXX/slurm.conf
#   sinfo                                 # one node, idle
#   bnbench run -m hydra/launcher=slurm dataset=synthetic train.epochs=1 model.norm=batch,none
#   tests/slurm/cluster.sh down           # stops the daemons it started, by pid
#
# `up [DIR]` installs slurmctld, slurmd, slurm-client and munge with apt-get when they are
# missing, writes a munge key and a slurm.conf under DIR (a new temporary directory when not
# given), starts munged, slurmctld and slurmd on free ports with their own socket, state and
# logs in DIR (nothing under /etc is read or changed), and waits until `sinfo` shows the node
# idle. `down [DIR]` (DIR defaults to the directory of $SLURM_CONF) cancels the cluster's jobs,
# stops the three daemons by the pids `up` recorded, and deletes DIR if `up` created it.
# SLURMCTLD_DEBUG=debug2 makes slurmctld log more (the tests read it). Exit status 77 means
# "cannot run here" (not root, not Linux, packages missing and no apt-get, ...): the reason is
# on stderr, and the tests skip with it. Tested with Debian 12's Slurm 22.05.8.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(munged slurmctld slurmd)

say() { echo "cluster.sh: $*" >&2; }
skip() {
    say "skipped: $*"
    exit 77
}

usage() {
    echo "usage: $0 up [DIR] | down [DIR] | status [DIR]" >&2
    exit 2
}

check_host() {
    [ "$(uname -s)" = Linux ] || skip "needs Linux (this is $(uname -s))"
    [ "$(id -u)" = 0 ] || skip "needs root (slurmd runs jobs as their user; run as root or with sudo)"
    command -v python3 >/dev/null || skip "needs python3 (to find free ports)"
    local missing=()
    for tool in slurmctld slurmd sinfo sbatch scontrol munged; do
        command -v "$tool" >/dev/null || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null ||
            missing+=("$tool")
    done
    [ ${#missing[@]} = 0 ] && return
    command -v apt-get >/dev/null ||
        skip "${missing[*]} missing and no apt-get to install ${PACKAGES[*]}"
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # policy-rc.d (containers) or systemd decides whether the packages start their own daemons;
    # ours use their own ports, socket and key, so either way they do not meet.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } >"$APT_LOG" 2>&1; then
        tail -n 5 "$APT_LOG" >&2
        skip "apt-get could not install ${PACKAGES[*]} (offline?)"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Start a daemon in the foreground of a new session, its output in DIR/log, and record its pid.
start() {
    local name=$1
    shift
    setsid "$@" </dev/null >"$DIR/log/$name.out" 2>&1 &
    echo $! >"$DIR/pids/$name"
}

alive() { # alive NAME: its recorded pid runs the daemon we started (not a recycled pid)
    local pid
    pid=$(cat "$DIR/pids/$1" 2>/dev/null) || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR"
}

stop_daemons() {
    local name pid
    for name in slurmd slurmctld munged; do # reverse order of start
        alive "$name" || continue
        pid=$(cat "$DIR/pids/$name")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do
            alive "$name" || break
            sleep 0.1
        done
        if alive "$name"; then
            say "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/pids/$name"
    done
}

fail() {
    say "$*"
    for log in "$DIR"/log/*; do
        [ -s "$log" ] && { echo "--- $log" >&2; tail -n 15 "$log" >&2; }
    done
    stop_daemons
    exit 1
}

up() {
    APT_LOG=$(mktemp)
    trap 'rm -f "$APT_LOG"' EXIT
    check_host
    export PATH="$PATH:/usr/sbin:/sbin"
    if [ -n "${1:-}" ]; then
        DIR=$(mkdir -p "$1" && cd "$1" && pwd)
    else
        DIR=$(mktemp -d /tmp/bnbench-slurm.XXXXXX)
        touch "$DIR/.created-by-up"
    fi
    chmod 700 "$DIR"
    for name in "${DAEMONS[@]}"; do
        if alive "$name"; then
            say "a cluster already runs in $DIR; run '$0 down $DIR' first"
            exit 1
        fi
    done
    mkdir -p "$DIR"/{munge,state,spool,log,pids}
    chmod 700 "$DIR"/munge

    # munge: a fresh key, our own socket
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    local socket="$DIR/munge/munge.socket"
    start munged munged --foreground --force --socket="$socket" \
        --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    for _ in $(seq 50); do
        [ -S "$socket" ] && break
        alive munged || fail "munged exited"
        sleep 0.1
    done
    [ -S "$socket" ] || fail "munged did not create $socket in 5 s"

    # slurm.conf: one node (this machine as slurmd -C sees it), one partition, no accounting
    local host node ctld_port slurmd_port
    host=$(hostname -s)
    node=$(slurmd -C 2>/dev/null | head -n 1)
    [[ $node == NodeName=* ]] || fail "slurmd -C did not describe this machine: $node"
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
    cat >"$DIR/slurm.conf" <<EOF
# Written by tests/slurm/cluster.sh: a single-node cluster for bnbench's tests.
ClusterName=bnbench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again this many seconds later (default 120); with
# sched_interval=2 it starts then, not at the next pass of the scheduler (every 60 s by default)
AuthInfo=socket=$socket,cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# debug2 logs each time-limit check ("Testing job time limits"): the requeue test times its run by them
SlurmctldDebug=${SLURMCTLD_DEBUG:-info}
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=300
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$DIR/slurm.conf"
    start slurmctld slurmctld -D -i -f "$SLURM_CONF"
    start slurmd slurmd -D -f "$SLURM_CONF"

    local state=""
    for _ in $(seq 300); do
        for name in "${DAEMONS[@]}"; do alive "$name" || fail "$name exited"; done
        state=$(sinfo -h -N -o %t 2>/dev/null | head -n 1) || true
        [ "$state" = idle ] && break
        sleep 0.1
    done
    [ "$state" = idle ] || fail "the node is not idle after 30 s (sinfo: '${state:-no answer}')"
    say "up: $(sinfo -h -o '%P %D node(s) %c CPUs %t') ($(sinfo -V)); stop with: $0 down $DIR"
    echo "export SLURM_CONF=$SLURM_CONF"
}

down() {
    local given=${1:-}
    if [ -z "$given" ]; then
        [ -n "${SLURM_CONF:-}" ] || usage
        given=$(dirname "$SLURM_CONF")
    fi
    [ -d "$given" ] || {
        say "no cluster directory $given"
        exit 0
    }
    DIR=$(cd "$given" && pwd)
    export PATH="$PATH:/usr/sbin:/sbin" SLURM_CONF="$DIR/slurm.conf"
    if alive slurmctld; then # the jobs first: their processes belong to slurmstepd, not to us
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 100); do # up to 10 s for their processes to end
            [ -z "$(squeue -h -t running,completing -o %i 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    stop_daemons
    if [ -e "$DIR/.created-by-up" ]; then rm -rf "$DIR"; fi
    say "down: stopped the daemons of $DIR"
}

status() {
    DIR=$(cd "${1:-$(dirname "${SLURM_CONF:?}")}" && pwd)
    for name in "${DAEMONS[@]}"; do
        if alive "$name"; then echo "$name: pid $(cat "$DIR/pids/$name")"; else echo "$name: stopped"; fi
    done
}

case "${1:-}" in
up) up "${2:-}" ;;
down) down "${2:-}" ;;
status) status "${2:-}" ;;
*) usage ;;
esac
