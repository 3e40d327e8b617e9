#!/bin/sh
# Install the Debian packages the pua test peers need (Kamailio presence
# server, registrar and call proxy (dialog, http_client) with SQLite and TLS, SIPp, sqlite3, dnsmasq for a test
# DNS zone, iproute2 and nftables for the bad-network campaign's namespaces and
# impairments), Kamailio's MySQL and PostgreSQL schema
# scripts (/usr/share/kamailio/{mysql,postgres}, for the store tests), the
# headless browser of the status page test (chromium, chromium-driver),
# Prosody, the XMPP server of the XMPP gateway tests (tests/peers/prosody.py
# runs its own on free ports; the system service is not needed), and
# Kamailio's xmpp module with a C compiler for the fix that
# tests/peers/kamailio_xmpp.py preloads into it (the reference XMPP gateway).
# Idempotent:
#   * everything already installed -> does nothing, exits 0 (fast path);
#   * not root                      -> one-line warning, exits 0;
#   * otherwise                     -> apt-get update + apt-get install.
# The packages' daemons must not be left running (Kamailio on 5060, Prosody on
# 5222/5269): a policy-rc.d that forbids service starts is put in place for the
# install (unless one already exists), and a Kamailio or Prosody service started
# anyway is stopped afterwards.
set -eu

PACKAGES="kamailio kamailio-presence-modules kamailio-sqlite-modules kamailio-utils-modules sip-tester sqlite3 ncurses-base curl
          kamailio-tls-modules
          dnsmasq-base
          iproute2 nftables
          kamailio-mysql-modules kamailio-postgres-modules
          chromium chromium-driver
          prosody
          kamailio-xmpp-modules gcc libc6-dev"

missing=""
for p in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-debian-deps.sh: WARNING: not root, cannot install missing packages:$missing" >&2
    exit 0
fi

POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        rm -f "$POLICY"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ ! -e "$POLICY" ]; then
    # 101 = "action forbidden by policy": invoke-rc.d / deb-systemd-invoke
    # will not start kamailio or prosody from the postinsts.
    printf '#!/bin/sh\nexit 101\n' > "$POLICY"
    chmod 0755 "$POLICY"
    created_policy=1
fi

echo "install-debian-deps.sh: installing:$missing"
apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES

cleanup
created_policy=0

# Belt and braces: if a Kamailio daemon got started by the package anyway
# (e.g. a policy-rc.d that allows it), stop it so nothing sits on 5060.
pidfile=/run/kamailio/kamailio.pid
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "install-debian-deps.sh: stopping the kamailio service started by the package"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then
        systemctl stop kamailio || true
        systemctl disable kamailio >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/kamailio ]; then
        /etc/init.d/kamailio stop || true
    fi
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
fi
# The same for Prosody: its package starts the system service on 5222/5269
# unless the policy forbids it. Only the service's own process is stopped (by
# its pidfile), never a test peer's Prosody.
pidfile=/run/prosody/prosody.pid
if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "install-debian-deps.sh: stopping the prosody service started by the package"
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prosody 2>/dev/null; then
        systemctl stop prosody || true
        systemctl disable prosody >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prosody ]; then
        /etc/init.d/prosody stop || true
    fi
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
fi
exit 0
