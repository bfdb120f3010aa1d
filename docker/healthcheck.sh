#!/bin/bash
# Container health check without curl: an HTTP GET over bash's /dev/tcp, healthy on a 200.
# Port: PAYMUX_HEALTH_PORT, else the one of PAYMUX_LISTEN (default 8080). Path: PAYMUX_HEALTH_PATH
# (default /healthz, paymux's liveness; paymux-sandbox answers on /_sandbox/healthz).
set -eu
listen=${PAYMUX_LISTEN:-0.0.0.0:8080}
port=${PAYMUX_HEALTH_PORT:-${listen##*:}}
path=${PAYMUX_HEALTH_PATH:-/healthz}
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
IFS=' ' read -r -t 3 _ status _ <&3
[ "$status" = 200 ]
