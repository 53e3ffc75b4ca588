#!/usr/bin/env bash
# What each of kiln's boot-time choices is worth, measured one at a time on the same disk by
# starting QEMU by hand (bench/run.sh calls it; it prints Markdown table rows).
#
#   bench/levers.sh SOURCE_DISK KERNEL INITRD tcg|kvm RUNS
#
# Boot: seconds from QEMU's start to the guest's SSH banner, each variant adding one lever to
# the one before; the variants take turns, so machine noise spreads over all of them.
# SSH: one command on a new connection against one over an open master connection.
# Stop: Packer's `poweroff` against kiln's sync and read-only remount, then SIGTERM to QEMU.
set -euo pipefail
disk=$1 kernel=$2 initrd=$3 accel=$4 runs=$5
work=$(mktemp -d /tmp/kiln-levers.XXXXXX)
qemu_pid=
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null || true
  ssh -o ControlPath="$work/mux" -O exit x 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N "" -f "$work/key"
credential="type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root=$(base64 -w0 "$work/key.pub")"
if [ "$accel" = kvm ]; then accel_args=(-accel kvm -cpu host); else accel_args=(-accel tcg,thread=multi -cpu max); fi

stock="root=LABEL=root rw console=ttyS0 net.ifnames=0"
quiet="$stock quiet loglevel=0 systemd.show_status=0"
masked="$quiet systemd.mask=ifupdown-pre.service systemd.mask=e2scrub_reap.service systemd.mask=getty-static.service"
masked="$masked systemd.mask=getty@tty1.service systemd.mask=serial-getty@ttyS0.service"
nomitigations="$masked mitigations=off"
networkd="$nomitigations systemd.mask=networking.service systemd.wants=systemd-network-generator.service"
networkd="$networkd systemd.wants=systemd-networkd.service ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off"
# Units nothing in a build needs: module loaders and mounts that run beside the critical path
# (two emulated CPUs share all of it), and timers that would start apt or fstrim mid-build.
units="$networkd"
for u in modprobe@loop.service modprobe@fuse.service modprobe@dm_mod.service modprobe@efi_pstore.service \
  modprobe@configfs.service dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
  sys-fs-fuse-connections.mount sys-kernel-config.mount apt-daily.timer apt-daily-upgrade.timer \
  dpkg-db-backup.timer e2scrub_all.timer fstrim.timer systemd-tmpfiles-clean.timer; do
  units="$units systemd.mask=$u"
done
# The PC machine's IDE controller (no disk on it) and KVM (TCG's CPU model advertises SVM).
modules="$units modprobe.blacklist=ata_piix,ata_generic,pata_acpi,kvm,kvm_amd,kvm_intel"
names=("Packer's settings: a verbose console" "+ a quiet console" "+ units a build does not need masked"
  "+ mitigations=off" "+ a static address from systemd-networkd instead of DHCP"
  "+ mounts, module loaders and timers a build does not need masked" "+ no IDE or KVM modules (kiln's settings)")
appends=("$stock" "$quiet" "$masked" "$nomitigations" "$networkd" "$units" "$modules")
kiln_variant=6

source "$(dirname "$0")/lib.sh"
port=
ssh_opts() {
  echo -i "$work/key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes \
    -o LogLevel=ERROR
}
# OpenSSH keeps the first value of an option: the control path is given once per command.
mux_opts() { echo -o ControlPath="$work/mux"; }
# Waits for sshd's identification string on the forwarded port, polling every 100 ms from one
# process (a process per attempt would take CPU from the booting guest); exits 1 if QEMU exits.
wait_banner() {
  python3 - "$port" "$qemu_pid" <<'PY'
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 300
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(0.3)
            if s.recv(4) == b"SSH-":
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

# boot VARIANT: starts QEMU, waits for the SSH banner; sets boot_time to the seconds it took.
# (Globals, not output: QEMU must stay a child of this shell, not of a command substitution.)
boot() {
  local v=$1
  rm -f "$work/disk.qcow2"
  qemu-img create -q -f qcow2 -b "$disk" -F qcow2 "$work/disk.qcow2"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local start; start=$(now)
  qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot "${accel_args[@]}" -smp 2 -m 1024 \
    -serial "file:$work/console.log" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2,cache=unsafe,discard=unmap" \
    -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=net0 -device virtio-rng-pci \
    -smbios "$credential" -kernel "$kernel" -initrd "$initrd" -append "${appends[$v]}" &
  qemu_pid=$!
  wait_banner || { echo "levers: no SSH banner within 300 s, or QEMU exited (variant $v)" >&2; exit 1; }
  boot_time=$(since "$start")
  # Logged in once (the key lands a moment after sshd starts); the master stays open.
  until ssh $(ssh_opts) $(mux_opts) -o ControlMaster=yes -o ControlPersist=yes root@127.0.0.1 true 2>/dev/null; do sleep 0.2; done
}

# halt HOW: powers the guest off; sets halt_time to the seconds until QEMU exited.
halt() {
  local start; start=$(now)
  if [ "$1" = packer ]; then
    ssh $(ssh_opts) $(mux_opts) root@127.0.0.1 poweroff >/dev/null 2>&1 || true
  else
    ssh $(ssh_opts) $(mux_opts) root@127.0.0.1 'sync; echo u > /proc/sysrq-trigger
      until awk '"'"'$2 == "/" { print $4 }'"'"' /proc/mounts | grep -q "^ro"; do sleep 0.1; done' || true
    kill -TERM "$qemu_pid"
  fi
  ssh -o ControlPath="$work/mux" -O exit x 2>/dev/null || true
  local waited=0
  while kill -0 "$qemu_pid" 2>/dev/null; do
    sleep 0.1
    waited=$((waited + 1))
    [ "$waited" -lt 1200 ] || { echo "levers: the guest did not power off within 120 s ($1)" >&2; exit 1; }
  done
  wait "$qemu_pid" || true
  qemu_pid=
  halt_time=$(since "$start")
}

declare -A times
new_conn=() mux=() halt_packer=() halt_kiln=()
for _ in $(seq "$runs"); do
  for v in "${!names[@]}"; do
    boot "$v"
    times[$v]+="$boot_time "
    if [ "$v" = 0 ]; then
      for _ in 1 2 3; do
        s=$(now); ssh $(ssh_opts) -o ControlPath=none root@127.0.0.1 true; new_conn+=("$(since "$s")")
        s=$(now); ssh $(ssh_opts) $(mux_opts) -o ControlMaster=no root@127.0.0.1 true; mux+=("$(since "$s")")
      done
      halt packer
      halt_packer+=("$halt_time")
    else
      halt kiln
      [ "$v" = "$kiln_variant" ] && halt_kiln+=("$halt_time")
    fi
  done
done
for v in "${!names[@]}"; do
  echo "| boot: ${names[$v]} | $(printf '%s\n' ${times[$v]} | stats) |"
done
echo "| SSH command on a new connection (Packer: each provisioner) | $(printf '%s\n' "${new_conn[@]}" | stats) |"
echo "| SSH command over the master connection (kiln: every step) | $(printf '%s\n' "${mux[@]}" | stats) |"
echo "| stop: \`poweroff\` in the guest (Packer's shutdown_command) | $(printf '%s\n' "${halt_packer[@]}" | stats) |"
echo "| stop: sync, read-only remount, SIGTERM to QEMU (kiln) | $(printf '%s\n' "${halt_kiln[@]}" | stats) |"
