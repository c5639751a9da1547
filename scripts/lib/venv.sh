# Sourced by the scripts: creates .venv on first use and installs when the pins change.
# VENV_INSTALL (set before sourcing) is what .venv needs; the default is everything the
# tests, the bench and scripts/invoke use. scripts/dev asks only for the runtime pins.
venv_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "error: Python 3.11 or newer is needed" >&2
  exit 1
}

# ensure_venv DIR PIP-ARGS...: create DIR once, install PIP-ARGS whenever the pins change.
ensure_venv() {
  local dir="$1"
  shift
  if [ ! -x "$dir/bin/python" ]; then
    echo "Creating $dir ..." >&2
    "$(venv_python)" -m venv "$dir"
  fi
  # One stamp per set of arguments, so a runtime-only install does not pass for a full one.
  local stamp stamp_file
  stamp="$(cat layer/requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
  stamp_file="$dir/.installed-$(echo "$*" | sha256sum | cut -c1-12)"
  if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ]; then
    echo "Installing dependencies into $dir ..." >&2
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    "$dir/bin/python" -m pip install --quiet "$@"
    echo "$stamp" > "$stamp_file"
  fi
}

# shellcheck disable=SC2086 # VENV_INSTALL is a list of pip arguments.
ensure_venv .venv ${VENV_INSTALL:--r layer/requirements.txt --group dev}
export PATH="$PWD/.venv/bin:$PATH"
export VIRTUAL_ENV="$PWD/.venv"
