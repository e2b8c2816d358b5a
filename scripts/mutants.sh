#!/usr/bin/env bash
# Mutation testing of hostlimit's core with cargo-mutants: makes every single-point change
# (an operator, a constant, a function body replaced by a default) to the core files, runs
# the fast tests on each, and prints the changes that no test noticed (the survivors).
#
# What counts as the core, the test command (`cargo test --release --lib`) and the mutants
# known to be equivalent (each with its reason) live in .cargo/mutants.toml. A survivor is a
# gap in the tests, or an equivalent mutant to mark there with its reason.
#
# Usage:
#   scripts/mutants.sh                  every mutant of the core files
#   scripts/mutants.sh --diff [BASE]    only the mutants on lines changed since BASE (default:
#                                       the merge base with origin/main, else main; on main
#                                       itself or without main, the last commit),
#                                       uncommitted changes included: what CI runs
#   scripts/mutants.sh [...] -- ARGS    ARGS go to cargo mutants (e.g. -F REGEX, --shard 1/4)
#
# To take one file only, select its mutants by name: `-- -F '^src/journal/restore.rs'`
# (`-f FILE` adds files to the config's list instead of narrowing it).
#
# Exit status: 0 when nothing survived, 1 when something did (or cargo mutants failed).
# Results in target/mutants.out (or $MUTANTS_OUT): caught.txt, missed.txt, timeout.txt,
# unviable.txt. A mutant that makes the tests hang is caught (timeout).
#
# Builds: incremental release builds (CARGO_PROFILE_RELEASE_INCREMENTAL), in
# $CARGO_TARGET_DIR if set, else target/mutants (its own, kept between runs, so dependencies
# are built once). On a 2-core VM: about 15-30 s per mutant once built; the first run adds
# the dependencies' release build (3-5 min). The full run (about 270 mutants): about 2 h.
#
# Needs cargo-mutants (`cargo install --locked cargo-mutants`, 27.x).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

diff_mode=false
base=""
while [ $# -gt 0 ]; do
    case "$1" in
        --diff)
            diff_mode=true
            shift
            if [ $# -gt 0 ] && [ "$1" != "--" ]; then
                base="$1"
                shift
            fi
            ;;
        --)
            shift
            break
            ;;
        *)
            echo "mutants.sh: unknown argument '$1' (see the header of $0)" >&2
            exit 1
            ;;
    esac
done

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "mutants.sh: cargo-mutants is not installed (cargo install --locked cargo-mutants)" >&2
    exit 1
fi

out="${MUTANTS_OUT:-$root/target}"
mkdir -p "$out"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/mutants}"
export CARGO_PROFILE_RELEASE_INCREMENTAL=true
# CARGO_INCREMENTAL=0 (as .ci/run sets it) would override the profile and rebuild the whole
# crate for every mutant: several times slower.
unset CARGO_INCREMENTAL

args=(--output "$out" --jobs 1 --colors never)
if $diff_mode; then
    if [ -z "$base" ]; then
        for candidate in origin/main main; do
            if base=$(git merge-base HEAD "$candidate" 2>/dev/null); then
                break
            fi
            base=""
        done
        if [ -z "$base" ] || [ "$base" = "$(git rev-parse HEAD)" ]; then
            # On main itself, or in a clone without main: the last commit's change.
            if ! base=$(git rev-parse -q --verify HEAD^); then
                echo "mutants.sh: SKIPPED: no main and no parent commit to compare with" \
                    "(a shallow clone?); give a BASE"
                exit 0
            fi
        fi
    fi
    diff_file="$out/mutants.diff"
    git diff "$base" -- >"$diff_file"
    echo "mutants.sh: mutants on the lines changed since $(git rev-parse --short "$base")"
    args+=(--in-diff "$diff_file")
fi

results="$out/mutants.out"
# cargo mutants writes nothing when no mutant is in the diff: clear the last run's results
# (kept as mutants.out.old, as cargo mutants itself does) so that they are not reported.
rm -rf "$results.old"
if [ -d "$results" ]; then
    mv "$results" "$results.old"
fi
start=$(date +%s)
status=0
cargo mutants "${args[@]}" "$@" || status=$?
elapsed=$(( $(date +%s) - start ))

count() { if [ -f "$results/$1" ]; then grep -c . "$results/$1" || true; else echo 0; fi; }

# cargo-mutants 27.1 applies no name filter (the config's exclude_re, -F, -E) to its
# "delete field ... from struct ... expression" mutants: those it misses that an exclude_re
# pattern names are equivalent (the config says why), not survivors. The patterns are simple
# enough to mean the same to grep -E once TOML's `\\` is read as `\`.
patterns="$out/mutants.exclude"
awk '/^exclude_re *= *\[/ { on = 1; next } on && /^\]/ { on = 0 } on' .cargo/mutants.toml |
    sed -n 's/^ *"\(.*\)", *$/\1/p' | sed 's/\\\\/\\/g' >"$patterns"
mkdir -p "$results"
: >"$results/equivalent.txt"
if [ -f "$results/missed.txt" ]; then
    cp "$results/missed.txt" "$results/survivors.txt"
    if [ -s "$patterns" ]; then
        grep -E -f "$patterns" "$results/missed.txt" >"$results/equivalent.txt" || true
        grep -E -v -f "$patterns" "$results/missed.txt" >"$results/survivors.txt" || true
    fi
else
    : >"$results/survivors.txt"
fi

echo
echo "mutants.sh: $(count caught.txt) caught, $(count timeout.txt) caught by a timeout," \
    "$(count survivors.txt) missed, $(count unviable.txt) unviable, in ${elapsed} s"
if [ "$(count equivalent.txt)" -gt 0 ]; then
    echo "mutants.sh: equivalent (excluded in .cargo/mutants.toml, tested all the same):"
    sed 's/^/  /' "$results/equivalent.txt"
fi
if [ "$(count survivors.txt)" -gt 0 ]; then
    echo "mutants.sh: survivors (no test noticed these changes):"
    sed 's/^/  /' "$results/survivors.txt"
    exit 1
fi
# 0: all caught; 2: only equivalent mutants missed (handled above); 3: some caught only by a
# timeout (hung tests), which is caught too. Any other status is a failure of the run itself.
case "$status" in
    0 | 2 | 3) exit 0 ;;
    *)
        echo "mutants.sh: cargo mutants failed (status $status)" >&2
        exit 1
        ;;
esac
