#!/usr/bin/env bash
# The actions/checkout stand-in's work (see action.yml): fetch like the real action, from the
# local bare repository, then check out a branch (-B) or a detached commit.
set -euo pipefail
if [[ -z "${ACT_STANDIN_GITHUB:-}" ]]; then
  echo "::error::checkout stand-in: ACT_STANDIN_GITHUB is not set (run the workflows through .github/act/run.py)"
  exit 1
fi
origin="$ACT_STANDIN_GITHUB/$REPOSITORY.git"
if [[ ! -d "$origin" ]]; then
  echo "::error::checkout stand-in: no repository $REPOSITORY at $origin"
  exit 1
fi
dest="$GITHUB_WORKSPACE${TARGET:+/$TARGET}"
mkdir -p "$dest"
cd "$dest"
git init -q .
git remote add origin "file://$origin"
depth=()
[[ "$DEPTH" == "0" ]] || depth=(--depth="$DEPTH")
if [[ "$DEPTH" == "0" ]]; then
  git fetch -q --prune origin '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*'
fi
ref="${REF:-$GITHUB_REF}"
commit=""
[[ -n "$REF" ]] || commit="$GITHUB_SHA"
if [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then
  git fetch -q "${depth[@]}" origin "$ref"
  git checkout -q --force --detach "$ref"
elif [[ "$ref" == refs/pull/* || "$ref" == refs/tags/* ]]; then
  local_ref="refs/remotes/pull/${ref#refs/pull/}"
  [[ "$ref" == refs/tags/* ]] && local_ref="$ref"
  git fetch -q "${depth[@]}" origin "+$ref:$local_ref"
  git checkout -q --force --detach "${commit:-$local_ref}"
else
  branch="${ref#refs/heads/}"
  git fetch -q "${depth[@]}" origin "+refs/heads/$branch:refs/remotes/origin/$branch"
  git checkout -q --force -B "$branch" "${commit:-refs/remotes/origin/$branch}"
fi
echo "checkout stand-in: $REPOSITORY at $(git rev-parse HEAD) ($ref, fetch-depth $DEPTH) in $dest"
[[ "$PERSIST" == "true" ]] && echo "checkout stand-in: no token to persist (persist-credentials: true)"
exit 0
