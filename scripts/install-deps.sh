#!/usr/bin/env bash
# install-deps.sh installs the Debian packages opsdrill's tests, lab image
# build and demo need on the host, only when one is missing, so repeated
# `make test` runs do not touch apt. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail

packages=(
	debootstrap    # lab image build (no container registry)
	debian-archive-keyring  # debootstrap checks the mirror's signatures with it
	oathtool       # TOTP reference validator (runbook)
	zbar-tools     # zbarimg: a second QR decoder reading totp.generate_key's PNG in tests
	libxml2-utils  # xmllint: junit.xml schema check
	iproute2       # network namespaces for host-level tests
	iptables       # firewall backends
	nftables
	ca-certificates
	chromium       # report.pdf and the browser tests of report.html
	poppler-utils  # pdftotext: reading report.pdf back in tests
	fonts-dejavu-core
	sane-utils     # scanimage with the SANE test backend: scanner.visible tests
	iputils-ping   # ping: net.ping measured against the ping binary (benchmark)
	curl           # port.open's tests call portgate through curl, as lab hosts do
	fwknop-client  # port.open driver: fwknop sends SPA packets with the real client
	conntrack      # portgate close_established: inspecting conntrack in its tests
	sysbench       # db.flood's throughput compared with oltp_insert (make bench-flood)
	openssh-server # sshd on loopback: the ssh:// transport's tests (steps/host/sshtest)
	openssh-client # ssh, ssh-keygen, ssh-agent: tests compare with the system client
	python3        # secret-leak property test: Python's repr, json.dumps, quote, quote_plus of a secret
	util-linux     # prlimit: the journal write-failure test
	procps         # pgrep: ssh.forward's keepalive test freezes the sshd serving it (sshd -T of sshd.config tests: openssh-server)
	awscli         # aws rds describe-db-instances --endpoint-url: the lab's RDS API service answers the real CLI
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all host packages present"
	exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps: need root to install: ${missing[*]}" >&2; exit 1; }
	sudo=sudo
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
