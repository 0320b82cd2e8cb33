#!/usr/bin/env bash
# Tears down what glusterfs-up.sh set up: unmounts both mount points, stops
# and deletes the volume, stops the glusterd that glusterfs-up.sh started
# (one that was already running stays), and removes the bricks. Safe to run
# at any time, again, or after a failed glusterfs-up.sh; it reports what it
# could not undo and exits non-zero then.
set -uo pipefail
state=${HICACHE_GLUSTER_DIR:-/tmp/hicache-gluster}
vol=${HICACHE_GLUSTER_VOLUME:-hicache}
status=0

say() { echo "glusterfs-down: $*" >&2; }

# Every mount under $state: the two of glusterfs-up.sh, and any made beside
# them by hand.
mounts() { awk -v s="$state/" 'index($2, s) == 1 { print $2 }' /proc/mounts; }
for m in $(mounts); do
	umount "$m" 2>/dev/null || umount -l "$m" || { say "cannot unmount $m"; status=1; }
done

if command -v gluster >/dev/null && gluster --mode=script volume info "$vol" >/dev/null 2>&1; then
	gluster --mode=script volume stop "$vol" force >/dev/null 2>&1
	gluster --mode=script volume delete "$vol" >/dev/null 2>&1 || { say "cannot delete volume $vol"; status=1; }
fi

# Brick and self-heal processes left without their glusterd (a run killed
# half-way): glusterd stops them with the volume when it can.
for f in /var/run/gluster/vols/"$vol"/*.pid /var/run/gluster/shd/"$vol"/*.pid; do
	[ -f "$f" ] || continue
	pid=$(cat "$f")
	if [ -n "$pid" ] && grep -qsE -- "$state/bricks|shd/$vol" "/proc/$pid/cmdline"; then
		kill "$pid" 2>/dev/null
	fi
	rm -f "$f"
done

if [ -f "$state/glusterd.pid" ]; then
	pid=$(cat "$state/glusterd.pid")
	if [ -n "$pid" ] && grep -qs glusterd "/proc/$pid/cmdline"; then
		sleep 1 # let the volume-delete hooks, which ask glusterd, finish
		kill "$pid"
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && { say "glusterd $pid did not stop"; status=1; }
	fi
	rm -f "$state/glusterd.pid"
fi

# The volume's definition, if glusterd was gone when it should have been
# deleted: glusterd would load it again next time, with its bricks gone.
if [ -d "/var/lib/glusterd/vols/$vol" ] && ! gluster --mode=script volume info "$vol" >/dev/null 2>&1; then
	rm -rf "/var/lib/glusterd/vols/$vol"
fi

if [ -d "$state" ]; then
	if [ -n "$(mounts)" ]; then
		say "$(mounts | head -n1) is still mounted; leaving $state"
		exit 1
	fi
	rm -rf "$state" || { say "cannot remove $state"; status=1; }
fi
exit $status
