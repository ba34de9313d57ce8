#!/bin/sh
# Entry script: the same command line operators run for the C image, built from the
# environment. The proxy-secret and proxy-multi.conf files must be mounted (or baked in);
# fetch them from Telegram (https://core.telegram.org/getProxySecret and
# https://core.telegram.org/getProxyConfig) on the host.
#
#   SECRET     comma-separated 32-hex-digit client secrets (required)
#   TAG        32-hex-digit proxy tag from @MTProxybot (optional)
#   WORKERS    -M value (default 0: one process using every core)
#   PORT       client port (default 443); STATS_PORT (default 2398, loopback only)
#   NAT_INFO   --nat-info local:global, needed behind NAT for the middle-end handshake
#   SECRET_FILE, CONFIG_FILE  (defaults /etc/mtproxy/proxy-secret, /etc/mtproxy/proxy-multi.conf)
set -eu
SECRET_FILE=${SECRET_FILE:-/etc/mtproxy/proxy-secret}
CONFIG_FILE=${CONFIG_FILE:-/etc/mtproxy/proxy-multi.conf}
for f in "$SECRET_FILE" "$CONFIG_FILE"; do
    if [ ! -r "$f" ]; then
        echo "run.sh: $f is missing: mount the proxy-secret and proxy-multi.conf files" >&2
        exit 1
    fi
done
if [ -z "${SECRET:-}" ]; then
    echo "run.sh: set SECRET to one or more 32-hex-digit secrets (comma-separated)" >&2
    exit 1
fi
set -- -u nobody -p "${STATS_PORT:-2398}" --http-stats -H "${PORT:-443}" -M "${WORKERS:-0}" \
    --aes-pwd "$SECRET_FILE"
old_ifs=$IFS
IFS=,
for s in $SECRET; do
    set -- "$@" -S "$s"
done
IFS=$old_ifs
if [ -n "${TAG:-}" ]; then
    set -- "$@" -P "$TAG"
fi
if [ -n "${NAT_INFO:-}" ]; then
    set -- "$@" --nat-info "$NAT_INFO"
fi
exec /usr/local/bin/mtproto-proxy "$@" "$CONFIG_FILE"
