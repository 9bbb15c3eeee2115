# PostgreSQL and Redis as the project's own processes (sourced by scripts/dev).
# Users whose Docker can pull images may use docker-compose.halfstack.yml instead
# (same ports, same credentials); scripts/dev then finds them already running.

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
# the password travels in REDISCLI_AUTH, never on a command line (ps shows those)
redis_ping() {  # redis_ping [PASSWORD]: what PING answers (PONG, NOAUTH …, or an error)
  if [ -n "${1:-}" ]; then
    REDISCLI_AUTH="$1" redis-cli --no-auth-warning -h 127.0.0.1 -p "$REDIS_PORT" ping 2>&1
  else
    env -u REDISCLI_AUTH redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>&1
  fi
}
redis_ready() { redis_ping "$(redis_password)" | grep -q PONG; }

# PostgreSQL refuses to run as root, so it runs as the `postgres` user, which must
# be able to reach its data directory. When the checkout sits somewhere that user
# cannot traverse (e.g. under /root), the data lives in /var/lib/kraken/<hash> and
# var/pgdata is a symlink to it.
pg_datadir() {
  if runuser -u postgres -- test -x "$VAR" 2>/dev/null; then
    echo "$VAR/pgdata"
  else
    echo "/var/lib/kraken/$(echo "$ROOT" | sha256sum | cut -c1-12)/pgdata"
  fi
}

pg_init() {
  local data="$1" bin; bin="$(pg_bin)"
  [ -n "$bin" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  mkdir -p "$data"
  chown postgres:postgres "$data"; chmod 700 "$data"
  [ "$data" = "$VAR/pgdata" ] || ln -sfn "$data" "$VAR/pgdata"
  local pw; pw="$(mktemp)"; echo kraken > "$pw"; chown postgres "$pw"
  say "initialising PostgreSQL in $data"
  runuser -u postgres -- "$bin/initdb" -D "$data" -U kraken --pwfile="$pw" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pw"
  cat >> "$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$data'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
}

halfstack_up() {
  if pg_ready; then
    say "PostgreSQL already answers on 127.0.0.1:$PG_PORT"
  else
    local data; data="$(pg_datadir)"
    [ -f "$data/PG_VERSION" ] || pg_init "$data"
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null \
      || die "PostgreSQL did not start; see $data/server.log"
    wait_for 30 PostgreSQL pg_ready
    runuser -u postgres -- "$(pg_bin)/psql" -q -h "$data" -p "$PG_PORT" -U kraken -d postgres \
      -tc "SELECT 1 FROM pg_database WHERE datname='kraken'" | grep -q 1 \
      || runuser -u postgres -- "$(pg_bin)/createdb" -h "$data" -p "$PG_PORT" -U kraken kraken
  fi
  redis_up
}

redis_conf() {  # the config holds requirepass, so it is written 0600
  write_private "$VAR/redis/redis.conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
dir $VAR/redis
daemonize yes
pidfile $VAR/run/redis.pid
logfile $VAR/logs/redis.log
save 60 1000
requirepass $(redis_password)
CONF
}

# Redis must require the password in var/keys/redis.pass. One already answering:
# - with that password: used as is;
# - without a password and started by this checkout (var/run/redis.pid, an older
#   scripts/dev): restarted with the password (its data in var/redis is kept);
# - without a password and started by something else, or with another password:
#   scripts/dev stops with a message saying what to do; it never reconfigures a
#   server it did not start.
redis_up() {
  mkdir -p "$VAR/redis" "$VAR/logs" "$VAR/run"
  set_redis_url
  local ours; ours="$(cat "$VAR/run/redis.pid" 2>/dev/null || true)"
  if redis_ping | grep -q PONG; then  # answers without any password
    if [ -n "$ours" ] && kill -0 "$ours" 2>/dev/null; then
      say "restarting this checkout's Redis (it ran without a password)"
      redis_down
    else
      die "Redis on 127.0.0.1:$REDIS_PORT runs WITHOUT a password and was not started by \
this checkout. Stop it (scripts/dev down in the checkout that started it, or docker compose \
down), or set its requirepass to the content of $VAR/keys/redis.pass, then run this again."
    fi
  elif redis_ready; then
    say "Redis already answers on 127.0.0.1:$REDIS_PORT (password required)"
    return
  elif redis_ping | grep -q -e NOAUTH -e WRONGPASS; then
    die "Redis on 127.0.0.1:$REDIS_PORT requires a password other than $VAR/keys/redis.pass; \
stop it or put its password into that file (mode 0600)"
  fi
  say "starting Redis on 127.0.0.1:$REDIS_PORT (password in var/keys/redis.pass)"
  redis_conf
  redis-server "$VAR/redis/redis.conf" >/dev/null
  wait_for 20 Redis redis_ready
}

redis_down() {
  if [ -f "$VAR/run/redis.pid" ] && kill -0 "$(cat "$VAR/run/redis.pid")" 2>/dev/null; then
    say "stopping Redis"
    local pid; pid="$(cat "$VAR/run/redis.pid")"
    kill "$pid" 2>/dev/null || true
    local i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  fi
  rm -f "$VAR/run/redis.pid"
}

halfstack_down() {
  # only what this checkout started: its pid file, its data directory
  redis_down
  local data="$VAR/pgdata"
  if [ -f "$data/postmaster.pid" ]; then
    say "stopping PostgreSQL"
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$(readlink -f "$data")" -m fast -w stop >/dev/null || true
  fi
}
