#!/usr/bin/env bash
# Install what tandem needs on Debian 12 (when missing) and build it.
# Used by tools/run, tools/test and .ci/run. Safe to run again.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

PKGS="build-essential autoconf automake libtool pkg-config \
libfcgi-dev libfcgi-bin libcurl4-openssl-dev libwebsockets-dev libjson-c-dev \
libopus-dev libogg-dev nginx-light spawn-fcgi opus-tools python3 curl mandoc openssl"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "tandem: missing Debian packages:$missing" >&2
		echo "tandem: run as root, or: sudo apt-get install$missing" >&2
		exit 1
	fi
	echo "tandem: installing$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# nginx's package would start a system nginx on port 80; we never need it.
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
	rm -f /usr/sbin/policy-rc.d
fi

configure_flags=${TANDEM_CONFIGURE_FLAGS:-}
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
	autoreconf -fi >/dev/null
fi
if [ ! -f Makefile ] || [ configure -nt Makefile ] || [ -n "$configure_flags" ]; then
	./configure $configure_flags >/dev/null
fi
make -j"$(nproc)" >/dev/null
