#!/usr/bin/env bash
# ensure-docker.sh makes sure a Docker engine answers before the lab image
# build and the tests use it. On a machine that has just booted the engine
# may still be starting, and on a fresh CI runner it may not be started at
# all: wait for it, start it when it is installed but not running (root or
# sudo), and fail with the engine's own log when it does not come up.
#
# OPSDRILL_DOCKER_WAIT (seconds, default 120) bounds the wait.
set -euo pipefail

wait_s=${OPSDRILL_DOCKER_WAIT:-120}
log() { printf 'docker: %s\n' "$*" >&2; }

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

command -v docker >/dev/null || { log "docker CLI not found; install docker.io (Debian) or Docker Engine"; exit 1; }
if answers; then
	exit 0
fi

# A remote engine (DOCKER_HOST) is not ours to start: only wait for it.
local_engine=true
case "${DOCKER_HOST:-}" in
"" | unix://*) ;;
*) local_engine=false ;;
esac

sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then
	sudo="sudo -n"
fi

started=""
start_engine() {
	if pgrep -x dockerd >/dev/null 2>&1; then
		log "dockerd is running but not answering yet; waiting"
		return
	fi
	if ! command -v dockerd >/dev/null; then
		log "no dockerd on this machine and no engine answers"
		return
	fi
	if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
		log "dockerd is not running and starting it needs root"
		return
	fi
	# Prefer the init system the machine has; fall back to dockerd itself.
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
		log "starting docker with systemctl"
		$sudo systemctl start docker && started=systemctl && return
	fi
	if [ -x /etc/init.d/docker ]; then
		log "starting docker with /etc/init.d/docker"
		$sudo /etc/init.d/docker start >/dev/null 2>&1 && started=init.d && return
	fi
	log "starting dockerd directly (log: /var/log/opsdrill-dockerd.log)"
	$sudo sh -c 'nohup setsid dockerd >/var/log/opsdrill-dockerd.log 2>&1 </dev/null &' && started=dockerd
}

$local_engine && start_engine

deadline=$((SECONDS + wait_s))
while [ $SECONDS -lt $deadline ]; do
	if answers; then
		log "engine answers after $((SECONDS))s${started:+ (started with $started)}"
		exit 0
	fi
	# The init script can give up on a slow start; start once more when no
	# dockerd is left running.
	if $local_engine && [ -n "$started" ] && ! pgrep -x dockerd >/dev/null 2>&1; then
		log "dockerd exited while starting; starting it again"
		started=""
		start_engine
	fi
	sleep 1
done

log "no Docker engine answered within ${wait_s}s (docker version failed); start Docker or set DOCKER_HOST"
for f in /var/log/opsdrill-dockerd.log /var/log/docker.log; do
	if [ -s "$f" ]; then
		log "last lines of $f:"
		tail -n 20 "$f" >&2 || true
	fi
done
docker version >&2 || true
exit 1
