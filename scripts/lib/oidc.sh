# Sourced by the scripts: installs the local OpenID Connect provider (standin/oidc, node's
# oidc-provider) from its lock file, once per lock. Returns 1 where node or npm is missing.
ensure_oidc() {
  command -v node >/dev/null && command -v npm >/dev/null || return 1
  local stamp
  stamp="$(sha256sum standin/oidc/package-lock.json | cut -d' ' -f1)"
  if [ "$(cat standin/oidc/node_modules/.installed 2>/dev/null)" != "$stamp" ]; then
    echo "Installing standin/oidc (npm ci) ..." >&2
    npm ci --prefix standin/oidc --silent --no-audit --no-fund || return 1
    echo "$stamp" > standin/oidc/node_modules/.installed
  fi
}
