#!/usr/bin/env bash
# Private Redis servers as production runs them, for the TLS, ACL and Redis Cluster checks
# (issue 18): started on free loopback ports with data dirs under a temporary folder, no
# persistence, and stopped by PID when the command given to this script ends. The shared Redis
# of the machine is never touched.
#
# Usage: scripts/redis/servers.sh [--cluster] [--tls] -- COMMAND [ARGS…]
#   (no option: both). Runs COMMAND with these variables set, then stops everything:
#   TMS_REDIS_CERTS       folder of the throwaway PKI made with openssl: ca.pem, server.pem,
#                         server.key, client.pem, client.key, and other-ca.pem (a CA that
#                         signed nothing here: the wrong CA)
#   TMS_REDIS_TLS_PORT    redis-server with TLS only (`--port 0 --tls-port P`), certificate for
#                         localhost only (not 127.0.0.1: the host-name check), client certificates not required
#   TMS_REDIS_MTLS_PORT   the same with `tls-auth-clients yes` (mutual TLS)
#   TMS_REDIS_ACL_PORT    plain TCP, ACL user `app` (password in TMS_REDIS_ACL_PASSWORD),
#                         `default` user without password too (for the tests' admin connection)
#   TMS_REDIS_ACL_PASSWORD  the password of `app` on the TLS, mutual-TLS and ACL servers
#   TMS_REDIS_CLUSTER     comma-separated redis:// URLs of a Redis Cluster of 3 masters with
#                         one replica each (`cluster-node-timeout` 2000 ms)
#   TMS_REDIS_CLUSTER_PIDS  the redis-server PIDs of the cluster, in the order of its URLs
#                         (the failover script kills one)
# Exits with COMMAND's status (1 if the setup failed). Needs redis-server, redis-cli (Debian's
# redis-server and redis-tools, installed when missing) and openssl.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/proc.sh
. "$SCRIPT_DIR/../lib/proc.sh"

want_cluster=0
want_tls=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cluster) want_cluster=1 ;;
    --tls) want_tls=1 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--cluster] [--tls] -- COMMAND [ARGS...]" >&2; exit 2 ;;
  esac
  shift
done
[ $# -gt 0 ] || { echo "usage: $0 [--cluster] [--tls] -- COMMAND [ARGS...]" >&2; exit 2; }
if [ "$want_cluster" = 0 ] && [ "$want_tls" = 0 ]; then want_cluster=1; want_tls=1; fi

note() { echo "redis-servers: $*" >&2; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v openssl >/dev/null || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  note "installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/tms-redis.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do stop_group "$pid" 25; done
  [ -n "${TMS_REDIS_KEEP:-}" ] && { note "kept $DIR"; return 0; }
  rm -rf "$DIR"
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PASSWORD="tms-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export TMS_REDIS_ACL_PASSWORD="$PASSWORD"

# start_redis NAME ARGS… : a redis-server in its own process group and folder; sets LAST_PID.
start_redis() {
  local name="$1"; shift
  mkdir -p "$DIR/$name"
  {
    echo "bind 127.0.0.1"
    echo "save \"\""
    echo "appendonly no"
    echo "dir $DIR/$name"
    echo "user default on nopass ~* &* +@all"
    echo "user app on >$PASSWORD ~* &* +@all"
  } >"$DIR/$name/redis.conf"
  setsid redis-server "$DIR/$name/redis.conf" "$@" >"$DIR/$name/log" 2>&1 </dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# wait_ready PORT [redis-cli TLS args…]
wait_ready() {
  local port="$1"; shift
  local deadline=$((SECONDS + 10))
  until redis-cli -h localhost -p "$port" "$@" ping 2>/dev/null | grep -q PONG; do
    [ "$SECONDS" -lt "$deadline" ] || { note "redis-server on port $port did not start"; exit 1; }
    sleep 0.1
  done
}

if [ "$want_tls" = 1 ]; then
  C="$DIR/certs"
  mkdir -p "$C"
  ossl() { openssl "$@" >/dev/null 2>&1 || { note "openssl $1 failed"; exit 1; }; }
  ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tms test CA" \
    -keyout "$C/ca.key" -out "$C/ca.pem"
  ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tms other CA" \
    -keyout "$C/other-ca.key" -out "$C/other-ca.pem"
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$C/server.ext"
  ossl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$C/server.key" -out "$C/server.csr"
  ossl x509 -req -in "$C/server.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
    -days 2 -extfile "$C/server.ext" -out "$C/server.pem"
  printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$C/client.ext"
  ossl req -newkey rsa:2048 -nodes -subj "/CN=tms client" -keyout "$C/client.key" -out "$C/client.csr"
  ossl x509 -req -in "$C/client.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
    -days 2 -extfile "$C/client.ext" -out "$C/client.pem"
  export TMS_REDIS_CERTS="$C"
  tls_args=(--tls-cert-file "$C/server.pem" --tls-key-file "$C/server.key" --tls-ca-cert-file "$C/ca.pem")

  TMS_REDIS_TLS_PORT="$(free_port)"
  start_redis tls --port 0 --tls-port "$TMS_REDIS_TLS_PORT" "${tls_args[@]}" --tls-auth-clients no
  TMS_REDIS_MTLS_PORT="$(free_port)"
  start_redis mtls --port 0 --tls-port "$TMS_REDIS_MTLS_PORT" "${tls_args[@]}" --tls-auth-clients yes
  TMS_REDIS_ACL_PORT="$(free_port)"
  start_redis acl --port "$TMS_REDIS_ACL_PORT"
  wait_ready "$TMS_REDIS_TLS_PORT" --tls --cacert "$C/ca.pem"
  wait_ready "$TMS_REDIS_MTLS_PORT" --tls --cacert "$C/ca.pem" --cert "$C/client.pem" --key "$C/client.key"
  wait_ready "$TMS_REDIS_ACL_PORT"
  export TMS_REDIS_TLS_PORT TMS_REDIS_MTLS_PORT TMS_REDIS_ACL_PORT
  note "TLS on $TMS_REDIS_TLS_PORT, mutual TLS on $TMS_REDIS_MTLS_PORT, ACL on $TMS_REDIS_ACL_PORT"
fi

# cluster_port: a free port P below 55536 whose cluster bus port P + 10000 is free too.
cluster_port() {
  python3 -c 'import socket, random
for _ in range(200):
    p = random.randrange(20000, 55000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
    except OSError:
        continue
    print(p); break'
}

if [ "$want_cluster" = 1 ]; then
  ports=()
  pids=()
  for i in 1 2 3 4 5 6; do
    port="$(cluster_port)"
    start_redis "node$i" --port "$port" --cluster-enabled yes --cluster-config-file "$DIR/node$i/nodes.conf" \
      --cluster-node-timeout 2000
    ports+=("$port")
    pids+=("$LAST_PID")
  done
  for port in "${ports[@]}"; do wait_ready "$port"; done
  hosts=()
  for port in "${ports[@]}"; do hosts+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${hosts[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/cluster-create.log" 2>&1 \
    || { cat "$DIR/cluster-create.log" >&2; note "redis-cli --cluster create failed"; exit 1; }
  deadline=$((SECONDS + 30))
  until [ "$(redis-cli -p "${ports[0]}" cluster info | tr -d '\r' | grep -c '^cluster_state:ok')" = 1 ] \
    && redis-cli --cluster check "127.0.0.1:${ports[0]}" 2>/dev/null | grep -q "All 16384 slots covered" \
    && [ "$(for p in "${ports[@]}"; do redis-cli -p "$p" cluster nodes | grep -c slave; done | sort -u)" = 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { note "the cluster did not converge"; exit 1; }
    sleep 0.2
  done
  urls=()
  for port in "${ports[@]}"; do urls+=("redis://127.0.0.1:$port"); done
  TMS_REDIS_CLUSTER="$(IFS=,; echo "${urls[*]}")"
  TMS_REDIS_CLUSTER_PIDS="$(IFS=,; echo "${pids[*]}")"
  export TMS_REDIS_CLUSTER TMS_REDIS_CLUSTER_PIDS
  note "cluster on ${hosts[*]}"
fi

set +e
"$@"
status=$?
set -e
exit "$status"
