#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and trying the sbatch templates:
#   scripts/slurm/local-cluster.sh start DIR   # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   export SLURM_CONF=DIR/slurm.conf           # then sbatch/squeue/scancel talk to it
#   scripts/slurm/local-cluster.sh stop DIR
# Needs Debian's slurm-wlm and munge, and root (the daemons run as root here; a real cluster
# runs them as the slurm user).
set -euo pipefail
cmd=${1:?usage: local-cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: local-cluster.sh start|stop DIR}")
node=$(hostname -s)
export SLURM_CONF="$dir/slurm.conf"

stop() {
  local pids=()
  for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
    [ -f "$pidfile" ] && pids+=("$(cat "$pidfile")")
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill "${pids[@]}" 2>/dev/null || true
  # Wait for the daemons to go (slurmctld saves its state first), so a later start can bind
  # the ports again; then make sure.
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
}

case "$cmd" in
  start)
    mkdir -p "$dir"/{state,spool,log,munge}
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    cat > "$dir/slurm.conf" <<CONF
ClusterName=radit-local
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120).
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=${RADIT_SLURM_CRED_EXPIRE:-10}
CryptoType=crypto/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=${RADIT_SLURMCTLD_PORT:-6817}
SlurmdPort=${RADIT_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobRequeue=1
SlurmdTimeout=60
InactiveLimit=0
KillWait=30
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    [ -f /etc/munge/munge.key ] || /usr/sbin/mungekey --create --keyfile /etc/munge/munge.key
    munged --force --socket "$dir/munge/munge.socket" --pid-file "$dir/munge/munged.pid" \
      --log-file "$dir/munge/munged.log" --seed-file "$dir/munge/munged.seed"
    slurmctld -i
    slurmd
    # Ready when the node is idle.
    for _ in $(seq 100); do
      state=$(sinfo -h -N -o %T 2>/dev/null || true)
      [ "$state" = idle ] && { echo "slurm: node $node idle (SLURM_CONF=$SLURM_CONF)"; exit 0; }
      sleep 0.2
    done
    echo "slurm: the node did not become idle; logs in $dir/log" >&2
    sinfo -N >&2 || true
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    stop
    exit 1
    ;;
  stop) stop ;;
  *) echo "usage: local-cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
