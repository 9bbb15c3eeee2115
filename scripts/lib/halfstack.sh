# PostgreSQL and Redis as the project's own processes (sourced by scripts/dev).
# Users whose Docker can pull images may use docker-compose.halfstack.yml instead
# (same ports, same credentials); scripts/dev then finds them already running.

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
redis_ready() { redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

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
  if redis_ready; then
    say "Redis already answers on 127.0.0.1:$REDIS_PORT"
  else
    mkdir -p "$VAR/redis" "$VAR/logs" "$VAR/run"
    say "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$VAR/redis" --daemonize yes \
      --pidfile "$VAR/run/redis.pid" --logfile "$VAR/logs/redis.log" --save 60 1000 >/dev/null
    wait_for 20 Redis redis_ready
  fi
}

halfstack_down() {
  # only what this checkout started: its pid file, its data directory
  if [ -f "$VAR/run/redis.pid" ] && kill -0 "$(cat "$VAR/run/redis.pid")" 2>/dev/null; then
    say "stopping Redis"
    kill "$(cat "$VAR/run/redis.pid")" 2>/dev/null || true
    rm -f "$VAR/run/redis.pid"
  fi
  local data="$VAR/pgdata"
  if [ -f "$data/postmaster.pid" ]; then
    say "stopping PostgreSQL"
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$(readlink -f "$data")" -m fast -w stop >/dev/null || true
  fi
}
