# A single-node cluster (one manager, one agent) as background processes
# (sourced by scripts/dev). Pids in var/run, logs in var/logs, secrets in var/keys.

# daemon_pid NAME: print the pid of our running daemon NAME (from var/run/NAME.pid) and
# succeed; otherwise remove the stale pid file and fail. `kill -0` is not enough after a
# crash: a killed process not yet reaped (a zombie) or a pid recycled by another process
# passes it. The process must exist, not be a zombie, and run `python -m NAME` with this
# checkout's var/ on its command line.
daemon_pid() {
  local name="$1" pidf="$VAR/run/$1.pid" pid="" stat="" state="" cmd=""
  [ -f "$pidf" ] || return 1
  pid="$(head -c 32 "$pidf" 2>/dev/null | tr -d '[:space:]')"
  if [[ "$pid" =~ ^[0-9]+$ ]] && read -r stat 2>/dev/null < "/proc/$pid/stat"; then
    state="${stat##*) }"; state="${state%% *}"
    cmd="$(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" || true)"
    if [ "$state" != Z ] && [ "$state" != X ] && [[ "$cmd" == *" -m $name "* ]] \
       && [[ "$cmd" == *"$VAR/"* ]]; then
      echo "$pid"
      return 0
    fi
  fi
  rm -f "$pidf"
  return 1
}

api_ready() { curl -fsS "http://127.0.0.1:$API_PORT/" >/dev/null; }

write_configs() {
  local keys="$VAR/keys"
  if [ ! -f "$keys/manager.key_secret" ]; then
    say "generating the agent-link CurveZMQ keys and join token"
    "$PY" -m manager gen-link-keys "$keys"
  fi
  [ -f "$keys/join_token" ] || (umask 077; "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$keys/join_token")
  if [ ! -f "$keys/secretbox.key" ]; then
    say "generating the key that encrypts keypair secrets at rest (var/keys/secretbox.key)"
    "$PY" -m manager gen-secrets-key "$keys/secretbox.key" >/dev/null
  fi
  if [ ! -f "$keys/atlas.key" ]; then
    say "generating the key that signs atlas tokens (var/keys/atlas.key)"
    "$PY" -m manager gen-atlas-key "$keys/atlas.key" >/dev/null
  fi
  chmod 600 "$keys"/manager.key_secret "$keys"/join_token "$keys"/secretbox.key "$keys"/atlas.key
  set_redis_url
  # these files hold credentials (the Redis password, key paths): mode 0600
  write_private "$VAR/manager.toml" <<TOML
[api]
host = "127.0.0.1"
port = $API_PORT

[db]
url = "postgresql+asyncpg://kraken:kraken@127.0.0.1:$PG_PORT/kraken"

[redis]
url = "$REDIS_URL"

[secrets]
key_file = "$keys/secretbox.key"

[atlas]
token_key_file = "$keys/atlas.key"
public_url = "http://127.0.0.1:$API_PORT"

[link]
bind = "tcp://127.0.0.1:$LINK_PORT"
secret_key_file = "$keys/manager.key_secret"
public_key_file = "$keys/manager.key"
join_token_file = "$keys/join_token"

[logging]
level = "INFO"
file = "$VAR/logs/manager.log"
TOML
  write_private "$VAR/agent.toml" <<TOML
agent_id = "$(hostname)"
region = "local"
scratch_root = "$VAR/scratch"

[manager]
endpoints = ["tcp://127.0.0.1:$LINK_PORT"]
public_key_file = "$keys/manager.key"
join_token_file = "$keys/join_token"

[logging]
level = "INFO"
file = "$VAR/logs/agent.log"
TOML
}

start_daemon() {  # start_daemon NAME ARGS...
  local name="$1" pid; shift
  if pid="$(daemon_pid "$name")"; then
    say "$name already running (pid $pid)"
    return
  fi
  say "starting $name"
  nohup "$PY" -m "$name" "$@" >>"$VAR/logs/$name.out" 2>&1 &
  echo $! > "$VAR/run/$name.pid"
}

ensure_admin_keypair() {
  local f="$VAR/keys/admin.env"
  [ -s "$f" ] && return
  say "creating the admin keypair"
  (umask 077; "$PY" -m manager keypair create -c "$VAR/manager.toml" --admin --user-id admin --shell > "$f.tmp")
  mv "$f.tmp" "$f"
}

agent_joined() {  # agent_joined SINCE: an agent joined or beat after SINCE (epoch seconds)
  "$PY" - "$PG_URL" "$1" <<'PYCODE'
import asyncio, sys, asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1])
    n = await conn.fetchval(
        "SELECT count(*) FROM agents WHERE status = 'ALIVE' "
        "AND last_heartbeat >= to_timestamp($1)", float(sys.argv[2]))
    await conn.close()
    sys.exit(0 if n else 1)
asyncio.run(main())
PYCODE
}

cluster_up() {
  write_configs
  "$PY" -m manager init-db -c "$VAR/manager.toml"
  ensure_admin_keypair
  start_daemon manager serve -c "$VAR/manager.toml"
  wait_for 30 "the manager API (see var/logs/manager.*)" api_ready
  local since; since="$(date +%s)"
  start_daemon agent -c "$VAR/agent.toml"
  wait_for 60 "the agent to join (see var/logs/agent.*)" agent_joined "$since"
  { echo "# Kraken dev cluster: source me (. var/env.sh)"
    echo "export BACKEND_ENDPOINT=http://127.0.0.1:$API_PORT"
    cat "$VAR/keys/admin.env"
    echo "export PATH=\"$CLIENT_VENV/bin:\$PATH\""
  } | write_private "$VAR/env.sh"
  say "cluster is up: manager http://127.0.0.1:$API_PORT, agent $(hostname)"
  cat <<USAGE

  . var/env.sh
  backend.ai run python -c "print('hello')"

  logs: var/logs/   stop: scripts/dev down
USAGE
}

stop_daemon() {  # only the process daemon_pid vouches for: never a recycled pid
  local name="$1" pid
  if pid="$(daemon_pid "$name")"; then
    say "stopping $name"
    kill "$pid" 2>/dev/null || true
    local i=0
    while daemon_pid "$name" >/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    if daemon_pid "$name" >/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$VAR/run/$name.pid"
}

cluster_down() {
  stop_daemon agent
  stop_daemon manager
  local left
  left="$(docker ps -aq --filter label=kraken.managed=1 --filter "label=ai.backend.agent-id=$(hostname)" 2>/dev/null || true)"
  if [ -n "$left" ]; then
    say "removing kernel containers of this cluster"
    # shellcheck disable=SC2086
    docker rm -f $left >/dev/null || true
  fi
}

cluster_status() {
  for name in manager agent; do
    local pid
    if pid="$(daemon_pid "$name")"; then echo "$name: running (pid $pid)"
    else echo "$name: stopped"; fi
  done
  pg_ready && echo "postgresql: running on $PG_PORT" || echo "postgresql: stopped"
  if redis_ping | grep -q PONG; then echo "redis: running on $REDIS_PORT WITHOUT a password (run scripts/dev halfstack)"
  elif redis_ready; then echo "redis: running on $REDIS_PORT (password required)"
  else echo "redis: stopped"; fi
}

run_checks() {
  say "lint (ruff) and types (mypy)"
  (cd "$ROOT" && "$VENV/bin/ruff" check common manager agent kernels jail bench tests \
     && "$VENV/bin/mypy")
}

run_tests() {
  set_redis_url
  export KRAKEN_TEST_PG_URL="$PG_URL" KRAKEN_TEST_REDIS_URL="$REDIS_URL"
  export KRAKEN_CLIENT_VENV="$CLIENT_VENV" KRAKEN_NO_SKIP=1
  cd "$ROOT"
  local rc=0
  "$VENV/bin/pytest" -q -p no:cacheprovider tests/unit "$@" || rc=$?
  [ $rc -eq 0 ] || return $rc
  "$VENV/bin/pytest" -q -p no:cacheprovider tests/integration "$@" || rc=$?
  [ $rc -eq 0 ] || return $rc
  "$VENV/bin/pytest" -q -p no:cacheprovider tests/e2e "$@" || rc=$?
  [ $rc -eq 0 ] || return $rc
  # the fault-injection suite runs its own PostgreSQL, Redis, managers and agents
  say "fault-injection suite (tests/faults; per-test durations below)"
  "$VENV/bin/pytest" -q -p no:cacheprovider --durations=0 tests/faults "$@"
}
