#!/usr/bin/env bash
# How bors publishes the build state of each merged commit. Run it on the CI machine after every merge to the
# main branch, never for try builds: those run unreviewed code and must not hold the key (field lesson 5).
#
#   KINDLING_SECRET_KEY=/secrets/bors.key tools/bors/publish-after-merge.sh <repository-url> <commit>
#
# The checkout and its target/ are kept between runs, so bors builds incrementally too. The build runs at the
# repository's build root (`kindling cargo`), exactly where developers' `kindling cargo` builds run, so the
# snapshot's paths are theirs. If a bors node runs for the store (`kindling node`, pinned seed), the new snapshot
# is announced to the mesh at once. The newest KEEP snapshots stay pinned; older ones may be evicted by gc.
set -euo pipefail

repository_url=${1:?usage: publish-after-merge.sh <repository-url> <commit>}
commit=${2:?usage: publish-after-merge.sh <repository-url> <commit>}
: "${KINDLING_SECRET_KEY:?set KINDLING_SECRET_KEY to the bors secret key file}"
kindling=${KINDLING:-kindling}
work=${KINDLING_CI_WORK:-$HOME/kindling-ci}
keep=${KEEP:-20}
profile=${PROFILE:-dev}

checkout="$work/$(basename "$repository_url" .git)"
if [ ! -d "$checkout/.git" ]; then
    git clone -q "$repository_url" "$checkout"
fi
git -C "$checkout" fetch -q origin
git -C "$checkout" checkout -q --detach "$commit"
# A clean tree (publish refuses a dirty one), but keep target/ for an incremental build.
git -C "$checkout" clean -qfdx -e target

cd "$checkout"
release=()
[ "$profile" = release ] && release=(--release)
# Never restore on bors: it builds from its own previous target.
KINDLING_NO_RESTORE=1 "$kindling" cargo build --locked "${release[@]}"
"$kindling" publish --cargo --secret-key "$KINDLING_SECRET_KEY" --profile "$profile" --pin

# Keep the newest $keep snapshots of this repository pinned; gc (or a node's --max-size) may evict the rest.
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
