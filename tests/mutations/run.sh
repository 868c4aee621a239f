#!/usr/bin/env bash
# Mutation check over server/ and the export gate.
#
# Each tests/mutations/*.patch breaks one promise on purpose; its "Killed-by:" lines name
# the tests that must then fail. This copies the working tree (tracked and untracked,
# not ignored, files) to a scratch folder once, then for each patch: applies it, runs its
# tests there, prints KILLED (they failed), SURVIVED (they passed: the suite misses the
# bug) or ERROR (the patch no longer applies, or the tests could not run), and reverts it.
# The working tree itself is never touched.
#
#   bash tests/mutations/run.sh                                  # every patch
#   bash tests/mutations/run.sh tests/mutations/await_saliency.patch
#
# PYTHON picks the interpreter (default: .venv/bin/python). Exit status: the number of
# mutations not killed.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

tree=$scratch/tree
mkdir "$tree"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$tree" 2>/dev/null)
ln -s "$(cd "$root/.." && pwd)/shared" "$scratch/shared"  # tests find ../shared/data beside the tree
# stylecam.* must import from the copy, not from the editable install's folders: the copy's
# stylecam/ package gets links to the copy's folders, and the copy comes first on the path
for folder in server models export bench web; do ln -s "$tree/$folder" "$tree/stylecam/$folder"; done
where=$(cd "$tree" && PYTHONPATH="$tree" "$python" -c "import stylecam.server as s; print(s.__path__[0])")
[ "$where" = "$tree/stylecam/server" ] || { echo "ERROR     stylecam.server imports from $where, not the copy"; exit 99; }

patches=("$@")
[ ${#patches[@]} -gt 0 ] || patches=("$root"/tests/mutations/*.patch)
killed=0
for patch in "${patches[@]}"; do
    patch=$(cd "$(dirname "$patch")" && pwd)/$(basename "$patch")
    name=$(basename "$patch" .patch)
    mapfile -t tests < <(sed -n 's/^Killed-by: //p' "$patch")
    if [ ${#tests[@]} -eq 0 ] || ! (cd "$tree" && patch -s -p1 --forward --no-backup-if-mismatch < "$patch" > /dev/null); then
        echo "ERROR     $name (no Killed-by line, or the patch does not apply)"
        continue
    fi
    (cd "$tree" && PYTHONPATH="$tree" "$python" -m pytest -q -x -p no:cacheprovider "${tests[@]}" > "$scratch/$name.log" 2>&1)
    rc=$?
    (cd "$tree" && patch -s -p1 -R --no-backup-if-mismatch < "$patch" > /dev/null)
    case $rc in
        0) echo "SURVIVED  $name (${tests[*]} passed)" ;;
        1) echo "KILLED    $name by ${tests[*]}"; killed=$((killed + 1)) ;;
        *) echo "ERROR     $name (pytest exit $rc):"; tail -5 "$scratch/$name.log" ;;
    esac
done
echo "$killed of ${#patches[@]} mutations killed"
exit $((${#patches[@]} - killed))
