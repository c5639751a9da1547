# Sourced by the scripts: installs a node package directory from its lock file, once per lock.
# ensure_npm DIR returns 1 where node or npm is missing (the tests that need it then skip).
ensure_npm() {
  local dir="$1" stamp
  command -v node >/dev/null && command -v npm >/dev/null || return 1
  stamp="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ "$(cat "$dir/node_modules/.installed" 2>/dev/null)" != "$stamp" ]; then
    echo "Installing $dir (npm ci) ..." >&2
    npm ci --prefix "$dir" --silent --no-audit --no-fund || return 1
    echo "$stamp" > "$dir/node_modules/.installed"
  fi
}

# The local OpenID Connect provider (node's oidc-provider) for the page's sign-in.
ensure_oidc() {
  ensure_npm standin/oidc
}
