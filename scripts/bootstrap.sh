# Sourced by ./cvm-image and scripts/test: makes a checkout runnable on a fresh Debian 12 machine.
# Installs the npm packages (npm ci) when the lockfile changed, compiles when a source is newer
# than dist/, and installs missing Debian packages (cvm-image doctor --install) when run as root.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need_node() {
  if ! command -v node >/dev/null 2>&1; then
    echo "cvm-image: Node.js 20 or 22 is needed (node not found). Install it, then run this again." >&2
    exit 3
  fi
  # package.json engines: 20.19 or later (vitest 4 and vite 7 need it)
  if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    echo "cvm-image: Node.js $(node --version) is too old: 20.19 or newer is needed (package.json engines)." >&2
    exit 3
  fi
}

ensure_npm() {
  local stamp="$top/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$top/package-lock.json" -nt "$stamp" ]; then
    echo "cvm-image: installing npm packages (npm ci)" >&2
    (cd "$top" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

ensure_dist() {
  if [ ! -f "$top/dist/commands/build.js" ] || [ -n "$(find "$top/src" "$top/package.json" "$top/tsconfig.json" -newer "$top/dist/commands/build.js" -print -quit)" ]; then
    echo "cvm-image: compiling (tsc)" >&2
    (cd "$top" && npx tsc -p tsconfig.json >&2)
    touch "$top/dist/commands/build.js"
  fi
}

ensure_host_tools() {
  # Checked once per checkout and list of requirements (a new tool is installed on the next run); a
  # tool removed later is still named by the stage that needs it.
  local stamp
  # the common tools (src/doctor/requirements.ts), each output format's (src/formats/table.ts) and
  # each distro module's (src/distro/*/index.ts)
  stamp="$top/node_modules/.cvm-image-doctor-ok-$(cat "$top/src/doctor/requirements.ts" "$top/src/formats/table.ts" "$top"/src/distro/*/index.ts | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  if node "$top/bin/run.js" doctor --json >/dev/null 2>&1; then touch "$stamp"; return 0; fi
  if [ "$(id -u)" -eq 0 ]; then
    node "$top/bin/run.js" doctor --install >&2 && touch "$stamp"
  else
    node "$top/bin/run.js" doctor >&2 || true
    echo "cvm-image: host tools are missing: run this as root once (or: sudo $top/cvm-image doctor --install)" >&2
    exit 3
  fi
}

need_node
ensure_npm
ensure_dist
ensure_host_tools
