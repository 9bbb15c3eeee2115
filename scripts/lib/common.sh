# Shared settings and helpers for scripts/dev (sourced, not run).
VAR="$ROOT/var"
VENV="$VAR/venv"
CLIENT_VENV="$VAR/client-venv"
PY="$VENV/bin/python"
PG_PORT="${KRAKEN_PG_PORT:-15432}"
REDIS_PORT="${KRAKEN_REDIS_PORT:-16379}"
API_PORT="${KRAKEN_API_PORT:-8081}"
LINK_PORT="${KRAKEN_LINK_PORT:-5020}"
PG_URL="postgresql://kraken:kraken@127.0.0.1:$PG_PORT/kraken"
# Redis requires a password, generated once into var/keys/redis.pass (mode 0600);
# set_redis_url sets REDIS_URL (redis://:PASSWORD@127.0.0.1:PORT/0), creating it first.
REDIS_URL=""

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf 'scripts/dev: %s\n' "$*" >&2; exit 1; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# write_private FILE: stdin into FILE with mode 0600 (also when FILE existed before)
write_private() { (umask 077; cat > "$1.tmp") && mv -f "$1.tmp" "$1"; }

redis_password() {  # prints the password; creates it the first time
  local f="$VAR/keys/redis.pass"
  if [ ! -s "$f" ]; then
    mkdir -p "$VAR/keys"
    (umask 077; "${PY:-python3}" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$f.tmp" \
      2>/dev/null || python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "$f.tmp")
    mv -f "$f.tmp" "$f"
  fi
  chmod 600 "$f"
  cat "$f"
}

set_redis_url() { REDIS_URL="redis://:$(redis_password)@127.0.0.1:$REDIS_PORT/0"; }

stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

do_install() {
  mkdir -p "$VAR"/{logs,run,scratch,keys}
  chmod 700 "$VAR/keys"
  redis_password >/dev/null
  apt_install postgresql redis-server mmdebstrap ca-certificates chromium chromium-driver \
    e2fsprogs mount  # mkfs.ext4, mount and losetup for the per-session scratch filesystems
  apt_install ffmpeg  # the model tests encode their synthetic videos on the host
  local python="${PYTHON:-python3}"
  command -v "$python" >/dev/null || die "python3 (>= 3.11) not found"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 is required"
  local want; want="$(stamp_of "$ROOT/setup.cfg" "$ROOT/pyproject.toml")"
  if [ ! -x "$PY" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Kraken into $VENV"
    [ -x "$PY" ] || "$python" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -e "$ROOT[test,dev]"
    echo "$want" > "$VENV/.stamp"
  fi
  want="$(stamp_of "$ROOT/tests/e2e/client-requirements.txt")"
  if [ ! -x "$CLIENT_VENV/bin/backend.ai" ] || [ "$(cat "$CLIENT_VENV/.stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the official client backend.ai-client==18.12.3 into $CLIENT_VENV"
    [ -x "$CLIENT_VENV/bin/python" ] || "$python" -m venv "$CLIENT_VENV"
    "$CLIENT_VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$CLIENT_VENV/bin/pip" install -q --no-deps backend.ai-client==18.12.3
    "$CLIENT_VENV/bin/pip" install -q -r "$ROOT/tests/e2e/client-requirements.txt"
    echo "$want" > "$CLIENT_VENV/.stamp"
  fi
}

build_images() {  # build_images [all|gpu|...]: a target of python -m kernels.build (default all)
  say "building kernel images (skipped when the recipe is unchanged)"
  "$PY" -m kernels.build "${1:-all}"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit="$1" what="$2"; shift 2
  local i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -gt $((limit * 5)) ] && die "timed out waiting for $what"
    sleep 0.2
  done
}
