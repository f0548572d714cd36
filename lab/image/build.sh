#!/usr/bin/env bash
# build.sh builds the opsdrill lab image without any container registry.
#
# Default (debootstrap) path, needs root, debootstrap and a Docker engine:
#   1. read the Debian mirror this machine's apt already uses
#      (/etc/apt/sources.list.d/*.sources in deb822 format, then the one-line
#      /etc/apt/sources.list and sources.list.d/*.list), or take
#      OPSDRILL_LAB_MIRROR;
#   2. debootstrap a minimal Debian bookworm root file system in a temporary
#      folder and install the packages of packages.txt into it;
#   3. `docker import` it with lab-init as the default command, then tag it
#      opsdrill-lab:<hash> in one atomic step.
#
# Dockerfile path (OPSDRILL_LAB_BUILD=dockerfile), for machines that can pull
# debian:bookworm-slim: `docker build` of the Dockerfile next to this script,
# same packages, same default command, same tag.
#
# The tag is a hash of packages.txt, build.sh, Dockerfile and lab-init (the Go
# code in lab/image computes the same hash), so an unchanged image is never
# rebuilt: the check is one `docker image inspect`. Interrupting a build leaves
# nothing behind: work happens in a temporary folder removed by a trap, and
# the tag only appears once the image is complete.
#
# Usage: build.sh [--force] [--print-tag] [--print-mirror]
#
# Environment:
#   OPSDRILL_LAB_BUILD    debootstrap (default) or dockerfile
#   OPSDRILL_LAB_MIRROR   Debian mirror URL, instead of the apt sources
#   OPSDRILL_LAB_APT_ETC  apt configuration folder to read (default /etc/apt)
#   OPSDRILL_LAB_KEYRING  keyring debootstrap checks the mirror with
#   TMPDIR                where the temporary root file system is built
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repository=opsdrill-lab
suite=bookworm
start=$SECONDS

log() { printf '==> [%3ds] %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

# image_hash must match lab/image.Hash in Go: sha256 of the four files
# concatenated in this order, first 12 hex digits.
image_hash() {
	cat "$here/packages.txt" "$here/build.sh" "$here/Dockerfile" "$here/lab-init" |
		sha256sum | cut -c1-12
}

packages() {
	sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$here/packages.txt"
}

# find_mirror prints the first Debian (non-security) mirror URL of the apt
# sources. A source counts when it is enabled, of type deb, and one of its
# suites is a Debian codename or archive name (bookworm, trixie-updates,
# stable, ...): that skips third-party repositories and the security archive.
find_mirror() {
	local etc=${OPSDRILL_LAB_APT_ETC:-/etc/apt}
	local files=()
	shopt -s nullglob
	files+=("$etc"/sources.list.d/*.sources)
	[ -f "$etc/sources.list" ] && files+=("$etc/sources.list")
	files+=("$etc"/sources.list.d/*.list)
	shopt -u nullglob
	[ "${#files[@]}" -gt 0 ] || return 1
	awk '
		function debian_suite(s,   n, i, a) {
			n = split(s, a, /[[:space:]]+/)
			for (i = 1; i <= n; i++) {
				if (a[i] ~ /-security$/) continue
				if (a[i] ~ /^(buster|bullseye|bookworm|trixie|forky|duke|sid|oldstable|stable|testing|unstable)(-updates|-backports)?$/) return 1
			}
			return 0
		}
		function consider(types, enabled, uris, suites,   n, u) {
			if (found || enabled ~ /^[[:space:]]*(no|false|0)[[:space:]]*$/) return
			if (types !~ /(^|[[:space:]])deb([[:space:]]|$)/) return
			if (!debian_suite(suites)) return
			n = split(uris, u, /[[:space:]]+/)
			if (u[1] == "" && n > 1) u[1] = u[2]
			if (u[1] == "") return
			print u[1]
			found = 1
		}
		function flush() {
			consider(types, enabled, uris, suites)
			types = enabled = uris = suites = ""
		}
		FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
		deb822 {
			if ($0 ~ /^[[:space:]]*$/) { flush(); next }
			if ($0 ~ /^#/ || $0 ~ /^[[:space:]]/) next
			key = tolower($0); sub(/:.*/, "", key)
			val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
			if (key == "types") types = val
			else if (key == "uris") uris = val
			else if (key == "suites") suites = val
			else if (key == "enabled") enabled = val
			next
		}
		{
			line = $0; sub(/#.*/, "", line)
			if (line !~ /^[[:space:]]*deb[[:space:]]/) next
			sub(/^[[:space:]]*deb[[:space:]]+/, "", line)
			if (line ~ /^\[/) sub(/^\[[^]]*\][[:space:]]*/, "", line)
			n = split(line, f, /[[:space:]]+/)
			consider("deb", "", f[1], f[2])
		}
		END { flush(); exit(found ? 0 : 1) }
	' "${files[@]}"
}

mirror() {
	if [ -n "${OPSDRILL_LAB_MIRROR:-}" ]; then
		printf '%s\n' "$OPSDRILL_LAB_MIRROR"
		return
	fi
	find_mirror || die "no Debian mirror found in the apt sources of ${OPSDRILL_LAB_APT_ETC:-/etc/apt}; set OPSDRILL_LAB_MIRROR=<URL of a Debian mirror>"
}

force=false
case "${1:-}" in
--print-tag) echo "$repository:$(image_hash)"; exit 0 ;;
--print-mirror) mirror; exit 0 ;;
--force) force=true ;;
"") ;;
*) die "unknown argument $1 (usage: build.sh [--force] [--print-tag] [--print-mirror])" ;;
esac

command -v docker >/dev/null || die "docker CLI not found; install docker.io (Debian) or Docker Engine"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "no Docker engine reachable (docker version failed); start Docker or set DOCKER_HOST"

tag="$repository:$(image_hash)"
previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
if ! $force && [ -n "$previous" ]; then
	log "lab image $tag is up to date"
	exit 0
fi

build_dockerfile() {
	log "building $tag from $here/Dockerfile (pulls debian:$suite-slim)"
	# docker build only tags the image once every layer is built.
	docker build --tag "$tag" --label "org.opsdrill.lab.hash=${tag#*:}" "$here"
}

# run runs a long step as a background job in its own process group and
# waits for it: bash only acts on a signal between commands, so waiting on a
# foreground child would delay an interrupt until the step ends. cleanup
# stops the whole group (debootstrap, apt, dpkg).
job=""
run() {
	"$@" &
	job=$!
	local status=0
	wait "$job" || status=$?
	job=""
	return "$status"
}

work=""
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ -n "$job" ]; then
		kill -TERM -- "-$job" 2>/dev/null || true
		wait "$job" 2>/dev/null || true
	fi
	if [ -n "$work" ] && [ -d "$work" ]; then
		# Unmount anything left mounted below the work folder (an interrupted
		# debootstrap or chroot), deepest first, before removing it.
		awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
		rm -rf --one-file-system "$work"
	fi
	[ "$status" -eq 0 ] || log "build failed or interrupted; nothing was tagged"
	exit "$status"
}

build_debootstrap() {
	[ "$(id -u)" -eq 0 ] || die "debootstrap needs root; run as root (sudo make lab-images) or use OPSDRILL_LAB_BUILD=dockerfile"
	command -v debootstrap >/dev/null || die "debootstrap not found; apt-get install debootstrap"

	local url keyring rootfs id
	url=$(mirror)
	keyring=${OPSDRILL_LAB_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
	[ -r "$keyring" ] || die "keyring $keyring not found; apt-get install debian-archive-keyring or set OPSDRILL_LAB_KEYRING"

	set -m # background jobs get their own process group (see run)
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	work=$(mktemp -d "${TMPDIR:-/tmp}/opsdrill-lab.XXXXXX")
	rootfs="$work/rootfs"

	log "[1/4] debootstrap $suite (minbase) from the apt mirror into $rootfs"
	run step_debootstrap "$keyring" "$rootfs" "$url" ||
		die "debootstrap failed (see messages above)"

	log "[2/4] installing $(packages | wc -l) packages"
	# Like Docker's own Debian images: services never start inside a build
	# or a container through invoke-rc.d; the lab starts daemons itself.
	printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
	chmod 755 "$rootfs/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
	mount -t proc proc "$rootfs/proc"
	run step_install "$rootfs" || die "package installation failed (see messages above)"
	for p in $(packages); do
		chroot "$rootfs" dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			die "package $p was not installed"
	done
	chroot "$rootfs" apt-get clean
	umount "$rootfs/proc"

	log "[3/4] finishing the root file system"
	install -m 755 "$here/lab-init" "$rootfs/usr/local/sbin/lab-init"
	rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
		"$rootfs"/tmp/* "$rootfs"/var/tmp/*
	: >"$rootfs/etc/resolv.conf"
	: >"$rootfs/etc/hostname"

	log "[4/4] docker import"
	run step_import "$rootfs" "$work/image-id" || die "docker import failed"
	id=$(cat "$work/image-id")
	# The tag is the commit point: before it, the image is an untagged layer
	# that `docker image prune` removes.
	docker tag "$id" "$tag"
}

step_debootstrap() {
	set -o pipefail
	debootstrap --variant=minbase --keyring="$1" "$suite" "$2" "$3" 2>&1 |
		{ grep --line-buffered -vE '^I: (Validating|Extracting|Retrieving) ' || true; }
}

step_install() {
	set -o pipefail
	local in_root=(chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive)
	"${in_root[@]}" apt-get -q update
	# shellcheck disable=SC2046 # one package per word
	"${in_root[@]}" apt-get -q -y --no-install-recommends -o Dpkg::Use-Pty=0 install $(packages) 2>&1 |
		{ grep --line-buffered -E '^(Setting up|Unpacking|E:|W:)' || true; }
}

step_import() {
	tar --numeric-owner -C "$rootfs" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' -cf - . |
		docker import \
			--change 'CMD ["/usr/local/sbin/lab-init"]' \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
			--change "LABEL org.opsdrill.lab.hash=${tag#*:}" \
			--message "opsdrill lab image $tag" - >"$2"
}

case "${OPSDRILL_LAB_BUILD:-debootstrap}" in
debootstrap) build_debootstrap ;;
dockerfile) build_dockerfile ;;
*) die "OPSDRILL_LAB_BUILD must be debootstrap or dockerfile, not ${OPSDRILL_LAB_BUILD}" ;;
esac
docker tag "$tag" "$repository:latest"
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
	# --force replaced the image; drop the old one unless containers use it.
	docker image rm "$previous" >/dev/null 2>&1 || true
fi
log "built $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
