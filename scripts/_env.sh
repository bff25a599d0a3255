# Shared by the scripts: an offline, reproducible environment and an up-to-date virtualenv.
# Never reach the internet from tests or the sandbox: the Alibaba SDKs honour HTTP(S)_PROXY and ignore NO_PROXY,
# and the credentials chain would otherwise probe the ECS metadata address.
unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy ALL_PROXY all_proxy
export ALIBABA_CLOUD_ECS_METADATA_DISABLED=true
export PYTHONDONTWRITEBYTECODE=1

# The virtualenv the scripts use: .venv, or VENV=/some/dir (e.g. one kept outside a throwaway clone).
VENV="${VENV:-.venv}"

# The three lock files, each including the one before: the runtime (the zip), the sandbox (plus the emulators'
# HTTP server), the tests.
LOCKS=(requirements.txt requirements-sandbox.txt requirements-dev.txt)

# ensure_venv REQUIREMENTS: create $VENV with Python >= 3.11 and install REQUIREMENTS when they changed.
ensure_venv() {
  local req="$1" python="${PYTHON:-python3}" stamp="$VENV/.installed"
  if [ ! -x "$VENV/bin/python" ]; then
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || { echo "Python >= 3.11 is required (set PYTHON=...)" >&2; exit 1; }
    echo "Creating $VENV with $("$python" --version)" >&2
    "$python" -m venv "$VENV"
  fi
  # The stamp records the locks' hash and which lock was installed; a later lock includes the earlier ones,
  # so a venv made for the tests also serves the sandbox and the packager without reinstalling.
  local hash have installed wanted=0 i
  hash="$(cat "${LOCKS[@]}" | sha256sum | cut -d' ' -f1)"
  have="$(cat "$stamp" 2>/dev/null || true)"
  for i in "${!LOCKS[@]}"; do [ "${LOCKS[$i]}" = "$req" ] && wanted=$i; done
  installed=-1
  for i in "${!LOCKS[@]}"; do [ "$have" = "$hash ${LOCKS[$i]}" ] && installed=$i; done
  if [ "$installed" -lt "$wanted" ]; then
    echo "Installing $req into $VENV" >&2
    # --no-deps: the lock files are complete, so the venv holds exactly their pins (requirements-nodeps.in).
    "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps -r "$req" 2>&1 \
      | grep -v '^WARNING: Location' >&2 || true
    "$VENV/bin/python" -c 'import fastapi, langchain, agent_identity_python_sdk' \
      || { echo "dependency install failed" >&2; exit 1; }
    echo "$hash $req" > "$stamp"
  fi
}

# ensure_chromium: the browser tests drive Debian's Chromium; install it when missing and we may.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Chromium (apt) for the browser tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) >&2 \
      || echo "Chromium could not be installed; browser tests will be skipped" >&2
  else
    echo "Chromium not found and not root: browser tests will be skipped" >&2
  fi
}

# ensure_node_modules DIR: install DIR's pinned npm packages (package-lock.json, `npm ci`) when they changed.
ensure_node_modules() {
  local dir="$1" stamp="$1/node_modules/.installed" hash
  command -v npm >/dev/null 2>&1 || { echo "npm not found: tests that need $dir will be skipped" >&2; return 0; }
  hash="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$hash" ]; then
    echo "Installing the pinned npm packages of $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) >&2
    echo "$hash" > "$stamp"
  fi
}
