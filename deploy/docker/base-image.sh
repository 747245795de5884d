#!/usr/bin/env bash
# A Python base image made offline, for building router-health's image where no
# image registry can be reached: Debian's python3 (no pip, no compilers)
# installed with debootstrap from the Debian mirror apt already uses, then
# `docker import`ed. Prints the image's tag on stdout.
#
#   deploy/docker/base-image.sh        # -> router-health-base:bookworm (Python 3.11)
#
# Kept between runs: the image itself, and its root filesystem as a tarball in
# $ROUTER_HEALTH_CACHE (default /var/cache/router-health) should Docker's own
# store be emptied. Needs root, debootstrap and a running Docker daemon.
set -euo pipefail
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")
tag="router-health-base:$codename"
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag"
    exit 0
fi
cache="${ROUTER_HEALTH_CACHE:-/var/cache/router-health}"
tarball="$cache/base-$codename.tar.gz"
if [ ! -s "$tarball" ]; then
    # The mirror apt is configured with: deb822 "URIs:" or one-line "deb URI suite".
    mirror=$(
        {
            sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
            sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
                /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
        } | tr ' ' '\n' | grep -E '/debian/?$' | head -n 1
    )
    if [ -z "$mirror" ]; then
        echo "base-image: no Debian mirror found in /etc/apt/sources.list*" >&2
        exit 1
    fi
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    echo "base-image: debootstrap $codename from $mirror (a minute or two, once)" >&2
    debootstrap --variant=minbase --include=python3 "$codename" "$root" "$mirror" \
        >"$root.log" 2>&1 || {
        tail -n 30 "$root.log" >&2
        exit 1
    }
    rm -f "$root.log"
    # What an image never needs: apt's lists and downloads, docs, manuals, translations.
    rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
    mkdir -p "$cache"
    tar -C "$root" -czf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
fi
docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' "$tarball" "$tag" >/dev/null
echo "$tag"
