#!/usr/bin/env bash
# Brings up a GlusterFS volume of two bricks with replica 2 on this host and
# mounts it twice with the FUSE client, so that two node processes can share
# one directory through two different clients, as two hosts would:
#
#   dirs=$(scripts/glusterfs-up.sh | tail -n1)
#   go tool ginkgo --label-filter=cluster -- -cluster-dirs="$dirs"
#   scripts/glusterfs-down.sh
#
# It installs Debian's glusterfs-server and glusterfs-client with apt-get if
# missing, starts glusterd (without systemd) unless one runs already, and
# prints the two mount points, comma-separated, as the last line of stdout;
# everything else goes to stderr. Run as root on a disposable machine: it
# uses glusterd's default state in /var/lib/glusterd. It first runs
# glusterfs-down.sh, so it starts clean after a failed run.
#
# Environment: HICACHE_GLUSTER_DIR (default /tmp/hicache-gluster) holds the
# bricks, the mount points, glusterd's pid file and log;
# HICACHE_GLUSTER_VOLUME (default hicache) names the volume;
# HICACHE_GLUSTER_MOUNT_OPTS adds mount options (such as
# attribute-timeout=0).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${HICACHE_GLUSTER_DIR:-/tmp/hicache-gluster}
vol=${HICACHE_GLUSTER_VOLUME:-hicache}
opts=${HICACHE_GLUSTER_MOUNT_OPTS:-}

say() { echo "glusterfs-up: $*" >&2; }
die() {
	say "$*"
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (glusterd, bricks and FUSE mounts)"
[ -c /dev/fuse ] || die "/dev/fuse is missing: the FUSE client cannot mount"

if ! command -v glusterd >/dev/null || ! command -v mount.glusterfs >/dev/null; then
	say "installing glusterfs-server and glusterfs-client"
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq glusterfs-server glusterfs-client >&2
fi

"$here/glusterfs-down.sh" >&2

# Bricks need a host name that is not a loopback literal, and that resolves.
host=$(hostname)
getent hosts "$host" >/dev/null || die "host name $host does not resolve (add it to /etc/hosts)"

mkdir -p "$state/bricks/b1" "$state/bricks/b2" "$state/mnt/a" "$state/mnt/b"

if ! gluster --mode=script volume list >/dev/null 2>&1; then
	say "starting glusterd"
	glusterd -p "$state/glusterd.pid" --log-file="$state/glusterd.log"
	for _ in $(seq 100); do
		gluster --mode=script volume list >/dev/null 2>&1 && break
		sleep 0.1
	done
	gluster --mode=script volume list >/dev/null 2>&1 || die "glusterd did not answer; see $state/glusterd.log"
fi

say "creating volume $vol: replica 2 on $host:$state/bricks/b1 and b2"
# Both bricks on one host need force; --mode=script answers replica 2's
# split-brain question.
gluster --mode=script volume create "$vol" replica 2 \
	"$host:$state/bricks/b1" "$host:$state/bricks/b2" force >&2
gluster --mode=script volume start "$vol" >&2

for m in a b; do
	ok=
	for _ in $(seq 50); do
		if mount -t glusterfs ${opts:+-o "$opts"} "127.0.0.1:/$vol" "$state/mnt/$m" 2>/dev/null &&
			mountpoint -q "$state/mnt/$m"; then
			ok=1
			break
		fi
		sleep 0.2
	done
	[ -n "$ok" ] || die "mount -t glusterfs 127.0.0.1:/$vol $state/mnt/$m failed; see /var/log/glusterfs/"
done

# A file made through one mount must show through the other.
probe=".probe-$$"
echo ok >"$state/mnt/a/$probe"
for _ in $(seq 100); do
	[ "$(cat "$state/mnt/b/$probe" 2>/dev/null)" = ok ] && break
	sleep 0.1
done
[ "$(cat "$state/mnt/b/$probe" 2>/dev/null)" = ok ] || die "a file written through $state/mnt/a does not show through $state/mnt/b"
rm -f "$state/mnt/a/$probe"
# Anyone may make a work directory on the volume, as in /tmp: the specs may
# run as another user than this script.
chmod 1777 "$state/mnt/a"

say "volume $vol mounted twice"
echo "$state/mnt/a,$state/mnt/b"
