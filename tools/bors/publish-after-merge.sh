#!/usr/bin/env bash
# How bors publishes the build state of each merged commit. Run it on the CI machine after every merge to the
# main branch, never for try builds (field lesson 5).
#
# Building and signing are split between two users, because the build runs arbitrary code (build scripts and
# proc macros of the merged commit and its dependencies) and must never see the key:
#
#   SIGNER  (default kindling-sign)  owns the checkout's git state and the store (KINDLING_HOME, else its
#                                    ~/.cache/kindling), and is the only user that can read the key file (mode
#                                    0400, in a directory only it can enter);
#   BUILDER (default kindling-build) runs `kindling cargo build`; it can read the checkout, write only target/
#                                    and its own CARGO_HOME (BUILDER_CARGO_HOME, else its ~/.cargo), and cannot
#                                    read the key. A user for this job alone: its processes are killed after
#                                    each build.
#
# As root, one call does the three steps, each as its user:
#
#   KINDLING_SECRET_KEY=/srv/kindling-sign/bors.key tools/bors/publish-after-merge.sh <repository-url> <commit>
#
#   1. checkout (SIGNER): clone or fetch, check out <commit>, clean; target/ is a folder owned by BUILDER. git
#      runs in the signer's own repository, so no git config or hook the build could write runs as the signer.
#   2. build (BUILDER): `kindling cargo build --locked` at the build root, with an environment that holds no key
#      (`kindling cargo` also drops every variable that names a key from what it runs, see Specs/cargo.md);
#      afterwards every process of BUILDER is killed, so nothing of the build runs while the signer reads target/.
#   3. sign (SIGNER): `kindling publish --cargo` reads target/ itself and hashes every chunk itself; it records
#      symlinks as symlinks and never follows one out of the target, and refuses a symlink where cargo keeps its
#      bookkeeping. Hard links: the build user could link a file it cannot read into target/ only where
#      fs.protected_hardlinks is 0, so the script refuses to sign unless it is 1 (keep the key on another
#      filesystem than target/ as well).
#
# Each step can also run on its own, as its user (`checkout|build|sign <repository-url> <commit>`), for a CI that
# already runs jobs as separate users. The checkout and its target/ are kept between runs, so bors builds
# incrementally too. If a bors node runs for the store (`kindling node`, pinned seed), the new snapshot is
# announced to the mesh at once. The newest KEEP snapshots stay pinned; older ones may be evicted by gc.
set -euo pipefail

usage="usage: publish-after-merge.sh [checkout|build|sign] <repository-url> <commit>"
step=all
case "${1:-}" in checkout | build | sign) step=$1; shift ;; esac
repository_url=${1:?$usage}
commit=${2:?$usage}
kindling=${KINDLING:-kindling}
signer=${SIGNER:-kindling-sign}
builder=${BUILDER:-kindling-build}
work=${KINDLING_CI_WORK:-/srv/kindling-ci}
keep=${KEEP:-20}
profile=${PROFILE:-dev}
# The branch the merged commit is the newest build of, for the signed head record (Specs/freshness.md); the
# checkout is detached, so publish cannot see it.
branch=${BRANCH:-master}
checkout="$work/$(basename "$repository_url" .git)"

home_of() { getent passwd "$1" | cut -d: -f6; }

# Runs "$@" as user $1 with a fresh environment that carries nothing of ours but what is named here (further
# NAME=value words before the command are added).
as_user() {
    local user=$1; shift
    runuser -u "$user" -- env -i HOME="$(home_of "$user")" PATH="$PATH" LANG=C.UTF-8 \
        KINDLING="$kindling" SIGNER="$signer" BUILDER="$builder" KINDLING_CI_WORK="$work" KEEP="$keep" \
        PROFILE="$profile" BRANCH="$branch" ${KINDLING_BUILD_ROOT:+KINDLING_BUILD_ROOT="$KINDLING_BUILD_ROOT"} "$@"
}

do_checkout() {
    if [ ! -d "$checkout/.git" ]; then
        git clone -q "$repository_url" "$checkout"
    fi
    git -C "$checkout" fetch -q origin
    git -C "$checkout" checkout -q --detach "$commit"
    # A clean tree (publish refuses a dirty one), but keep target/ for an incremental build.
    git -C "$checkout" clean -qfdx -e target
}

do_build() {
    if [ -n "${KINDLING_SECRET_KEY:-}" ]; then
        echo "publish-after-merge.sh: the build step must not hold the key; run it as $builder without it" >&2
        exit 1
    fi
    cd "$checkout"
    # The checkout is the signer's: the builder's git (which kindling runs to find the commit) trusts it.
    export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0="$checkout"
    local release=()
    [ "$profile" = release ] && release=(--release)
    # Never restore on bors: it builds from its own previous target.
    KINDLING_NO_RESTORE=1 "$kindling" cargo build --locked "${release[@]}"
    # The signer reads target/ (rustc makes some files, such as incremental locks, 0600); it is published anyway.
    chmod -R a+rX target
}

do_sign() {
    : "${KINDLING_SECRET_KEY:?set KINDLING_SECRET_KEY to the bors secret key file}"
    if [ "$(cat /proc/sys/fs/protected_hardlinks 2>/dev/null)" != 1 ]; then
        echo "publish-after-merge.sh: fs.protected_hardlinks is not 1: the build user could hard-link files it" \
            "cannot read into target/; set it (sysctl fs.protected_hardlinks=1) before signing" >&2
        exit 1
    fi
    cd "$checkout"
    "$kindling" publish --cargo --secret-key "$KINDLING_SECRET_KEY" --profile "$profile" --branch "$branch" --pin

    # Keep the newest $keep snapshots of this repository pinned; gc (or a node's --max-size) may evict the rest.
    local repository
    repository=$("$kindling" list --json | python3 -c '
import json, sys
rows = json.load(sys.stdin)
commit = sys.argv[1]
print(next((r["repository"] for r in rows if r["commit"] == commit), ""))' "$(git rev-parse HEAD)")
    "$kindling" list --repo "$repository" --json | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if r["pinned"]]
for row in rows[int(sys.argv[1]):]:
    print(row["id"])' "$keep" | while read -r id; do "$kindling" unpin "$id" >/dev/null; done
}

case "$step" in
checkout) do_checkout ;;
build) do_build ;;
sign) do_sign ;;
all)
    if [ "$(id -u)" != 0 ]; then
        echo "publish-after-merge.sh: run as root to switch users, or run each step as its user" >&2
        exit 1
    fi
    : "${KINDLING_SECRET_KEY:?set KINDLING_SECRET_KEY to the bors secret key file}"
    script=$(readlink -f "$0")
    install -d -o "$signer" -m 0755 "$work"
    as_user "$signer" "$script" checkout "$repository_url" "$commit"
    # target/ belongs to the builder; the checkout around it stays the signer's (not writable by the build).
    install -d -o "$builder" -m 0755 "$checkout/target"
    as_user "$builder" ${BUILDER_CARGO_HOME:+CARGO_HOME="$BUILDER_CARGO_HOME"} "$script" build "$repository_url" "$commit"
    # Nothing of the build may still run while the signer reads target/ (a detached build script could swap
    # folders for links between the signer's checks and its reads). BUILDER must be a user for this job alone.
    pkill -KILL -u "$builder" || true
    as_user "$signer" KINDLING_SECRET_KEY="$KINDLING_SECRET_KEY" ${KINDLING_HOME:+KINDLING_HOME="$KINDLING_HOME"} \
        "$script" sign "$repository_url" "$commit"
    ;;
esac
