# Sourced by tests/kernel/provision and tests/kernel/provision-qemu: the lane's private apt state
# under CACHE/apt (its own sources list and lists, the host's dpkg status read only), so that
# nothing of the host's apt configuration or system is touched.
#
#   apt_private CACHE MIRROR SUITE    sets apt_dir and apt_opts, reads the package lists
#                                     (calls die, which the caller defines, when it cannot)
apt_private() {
  local cache="$1" mirror="$2" suite="$3"
  apt_dir="$cache/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/etc"
  echo "deb $mirror $suite main" >"$apt_dir/etc/sources.list"
  apt_opts=(
    -o "Dir::Etc::sourcelist=$apt_dir/etc/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::State::status=/var/lib/dpkg/status"
    -o "APT::Get::List-Cleanup=0"
    -o "Acquire::Retries=2"
    -o "Acquire::http::Timeout=20"
    -o "Debug::NoLocking=1"
  )
  # apt-get download runs as _apt when it can; the private directories must be reachable by it.
  chmod -R a+rwX "$apt_dir" 2>/dev/null || true
  chmod a+x "$cache" 2>/dev/null || true
  log "reading the package lists of $mirror $suite"
  if ! apt-get "${apt_opts[@]}" -q update >"$apt_dir/update.log" 2>&1 \
    || grep -qE '^(W|E): Failed to fetch' "$apt_dir/update.log"; then
    sed 's/^/  /' "$apt_dir/update.log" >&2
    die "could not fetch the package lists of '$mirror $suite' (mirror unreachable?)"
  fi
}

# apt_download DIR PACKAGE...: fetches each package (a NAME or NAME=VERSION) into DIR unless a
# .deb of that name is there already.
apt_download() {
  local dir="$1" pkg
  shift
  mkdir -p "$dir"
  chmod a+rwx "$dir"
  for pkg in "$@"; do
    if ls "$dir/${pkg%%=*}_"*.deb >/dev/null 2>&1; then continue; fi
    log "downloading $pkg"
    if ! (cd "$dir" && apt-get "${apt_opts[@]}" -q download "$pkg") >"$apt_dir/download.log" 2>&1; then
      sed 's/^/  /' "$apt_dir/download.log" >&2
      die "could not fetch package '$pkg' from $(cat "$apt_dir/etc/sources.list")"
    fi
  done
}
