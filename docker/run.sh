#!/bin/sh
# Entry script with the environment contract of the official telegrammessenger/proxy image,
# so an existing `docker run` keeps working with this image:
#
#   SECRET        one or more 32-hex-digit client secrets, comma-separated (at most 16);
#                 else the one saved in /data/secret; else SECRET_COUNT (1..16, default 1)
#                 random ones, saved in /data/secret
#   TAG           32-hex-digit proxy tag from @MTProxybot (a bad one is reported and ignored)
#   WORKERS       -M value (default 2)
#
# Exit codes, as the official script: 1 bad secret, 2 the config cannot be downloaded,
# 3 no external IP, 4 no internal IP, 5 bad SECRET_COUNT or the proxy secret cannot be
# downloaded. The proxy itself is PID 1 (exec): SIGTERM (docker stop) drains the clients
# for up to 5 s and exits 0.
#
# Additions (not in the official image):
#   /data/proxy-secret and /data/proxy-multi.conf, when both are present (mounted), are used
#   as they are: no download, no network needed (refresh them on the host, then SIGHUP)
#   EXTERNAL_IP, INTERNAL_IP   skip the network look-ups (the --nat-info pair)
#   PORT (default 443), STATS_PORT (default 2398)
#   DOMAIN        -D: fake TLS only, links get the ee<secret><domain> form
#   DRAIN_TIMEOUT --drain-timeout seconds
set -eu
[ -n "${DEBUG:-}" ] && set -x
DATA=${DATA_DIR:-/data}
mkdir -p "$DATA" 2>/dev/null || true
WORKERS=${WORKERS:-2}
PORT=${PORT:-443}
STATS_PORT=${STATS_PORT:-2398}
BIN=/usr/local/bin/mtproto-proxy

echo "####"
echo "#### Telegram Proxy (mtproxy-rs)"
echo "####"
echo

random_secret() {
    od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}

if [ -n "${SECRET:-}" ]; then
    echo "[+] Using the explicitly passed secret: '$SECRET'."
elif [ -f "$DATA/secret" ]; then
    SECRET=$(cat "$DATA/secret")
    echo "[+] Using the secret in $DATA/secret: '$SECRET'."
else
    COUNT=${SECRET_COUNT:-1}
    case "$COUNT" in
        '' | *[!0-9]*) COUNT=0 ;;
    esac
    if [ "$COUNT" -lt 1 ] || [ "$COUNT" -gt 16 ]; then
        echo "[F] Can generate between 1 and 16 secrets."
        exit 5
    fi
    echo "[+] No secret passed. Will generate $COUNT random ones."
    SECRET=$(random_secret)
    i=2
    while [ "$i" -le "$COUNT" ]; do
        SECRET="$SECRET,$(random_secret)"
        i=$((i + 1))
    done
fi

if echo "$SECRET" | grep -qE '^[0-9a-fA-F]{32}(,[0-9a-fA-F]{32}){0,15}$'; then
    SECRET=$(echo "$SECRET" | tr '[:upper:]' '[:lower:]')
    echo "$SECRET" > "$DATA/secret" 2>/dev/null || true
else
    echo '[F] Bad secret format: should be 32 hex chars (for 16 bytes) for every secret; secrets should be comma-separated.'
    exit 1
fi

set --
if [ -n "${TAG:-}" ]; then
    echo "[+] Using the explicitly passed tag: '$TAG'."
    if echo "$TAG" | grep -qE '^[0-9a-fA-F]{32}$'; then
        set -- -P "$(echo "$TAG" | tr '[:upper:]' '[:lower:]')"
    else
        echo '[!] Bad tag format: should be 32 hex chars (for 16 bytes).'
        echo '[!] Continuing.'
        TAG=
    fi
fi

CONFIG="$DATA/proxy-multi.conf"
PROXY_SECRET="$DATA/proxy-secret"
if [ -s "$CONFIG" ] && [ -s "$PROXY_SECRET" ]; then
    echo "[+] Using the provided $PROXY_SECRET and $CONFIG."
else
    curl -fsS https://core.telegram.org/getProxyConfig -o "$CONFIG" || {
        echo '[F] Cannot download proxy configuration from Telegram servers.'
        exit 2
    }
    curl -fsS https://core.telegram.org/getProxySecret -o "$PROXY_SECRET" || {
        echo '[F] Cannot download proxy secret from Telegram servers.'
        exit 5
    }
fi

if [ -z "${INTERNAL_IP:-}" ]; then
    INTERNAL_IP=$(ip -4 route get 8.8.8.8 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1 || true)
fi
IP=${EXTERNAL_IP:-}
if [ -z "$IP" ]; then
    IP=$(curl -fs -4 https://digitalresistance.dog/myIp || curl -fs -4 https://checkip.amazonaws.com || true)
fi
if [ -z "$IP" ]; then
    echo "[F] Cannot determine external IP address."
    exit 3
fi
if [ -z "$INTERNAL_IP" ]; then
    echo "[F] Cannot determine internal IP address."
    exit 4
fi

DOMAIN_HEX=
if [ -n "${DOMAIN:-}" ]; then
    set -- "$@" -D "$DOMAIN"
    DOMAIN_HEX=$(printf '%s' "$DOMAIN" | od -An -tx1 | tr -d ' \n')
fi
if [ -n "${DRAIN_TIMEOUT:-}" ]; then
    set -- "$@" --drain-timeout "$DRAIN_TIMEOUT"
fi

echo "[*] Final configuration:"
i=1
for S in $(echo "$SECRET" | tr ',' ' '); do
    if [ -n "$DOMAIN_HEX" ]; then
        L="ee$S$DOMAIN_HEX"
    else
        L="$S"
    fi
    echo "[*]   Secret $i: $S"
    echo "[*]   tg:// link for secret $i auto configuration: tg://proxy?server=${IP}&port=${PORT}&secret=${L}"
    echo "[*]   t.me link for secret $i: https://t.me/proxy?server=${IP}&port=${PORT}&secret=${L}"
    set -- "$@" -S "$S"
    i=$((i + 1))
done
if [ -n "${TAG:-}" ]; then echo "[*]   Tag: $TAG"; else echo "[*]   Tag: no tag"; fi
echo "[*]   External IP: ${IP}"
echo "[*]   Make sure to fix the links in case you run the proxy on a different port."
echo
echo '[+] Starting proxy...'
exec "$BIN" -p "$STATS_PORT" -H "$PORT" -M "$WORKERS" -C 60000 --aes-pwd "$PROXY_SECRET" "$CONFIG" \
    --allow-skip-dh --nat-info "$INTERNAL_IP:$IP" "$@"
