#!/usr/bin/env bash
# hostlimit on aarch64-unknown-linux-gnu, under user-mode emulation (qemu-user) on x86_64.
#
# Installs what it needs (the Rust target, Debian's cross gcc and arm64 libc, qemu-user >= 8.1),
# runs clippy for the target, cross-builds the tests once, and runs them under three CPU
# models, so that every path of the 128-bit atomics (src/region/atomic/aarch64.rs) runs:
#
#   max          ARMv8.x with LSE and LSE2: casp, ldp loads       the whole suite
#   cortex-a72   ARMv8.0, no LSE:           ldxp/stxp             library + multi-process tests
#   neoverse-n1  ARMv8.2, LSE, no LSE2:     casp, casp loads      library + multi-process tests
#
# Each run checks that it got the primitives it was meant to test (HOSTLIMIT_EXPECT_ATOMICS,
# src/region/atomic/tests.rs), and the library tests include the cross-process controls that
# would catch an emulator whose atomics are not atomic across processes.
#
# The binaries run through qemu registered with binfmt_misc inside a private user namespace
# (Linux >= 6.7 allows a binfmt_misc mount per user namespace): every process the tests start,
# including the demo's and the shell's, runs as it would on an ARM machine, and nothing is
# registered for the host. HOSTLIMIT_TEST_RUNNER is set as well, so the test workers go
# through qemu explicitly (the path for machines without binfmt_misc, tests/support/process.rs).
#
# Release builds with debug assertions and overflow checks: the emulator is 3-10x slower than
# the host on CPU-bound code. Skipped, because of the emulator, not of the architecture (the
# x86_64 steps run them):
# - the benchmark baseline's robust-mutex test: qemu-user does not emulate robust futexes
#   (set_robust_list), so a dead holder's mutex is never recovered and the test hangs;
# - five command-line tests that run several `hostlimit` commands within one rate window of
#   a second and expect the window not to have moved, or that tell "gave up at once" from a
#   wait by a few milliseconds: under qemu a `hostlimit` command takes 0.2-0.45 s to start (a
#   native one 10 ms), so the window has moved and "at once" takes longer;
# - the hostile-file test, whose bound is CPU time per call calibrated on the native build
#   (50 ms), which emulation multiplies by 3-10 on CPU-bound code;
# - the reset/remove race, which starts about 900 processes (0.2-0.45 s each under qemu).
# The command-line tests need the `cli` feature, which the suite here is built with.
#
# Usage: .ci/aarch64.sh [CPU...]     (default: max cortex-a72 neoverse-n1)
set -euo pipefail
script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
tools="$PWD/target/aarch64-tools"
sysroot=/usr/aarch64-linux-gnu
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
export QEMU_LD_PREFIX="$sysroot"
export HOSTLIMIT_TEST_RUNNER="$tools/qemu-aarch64"
skip=(
    --skip baselines::tests::robust_mutex_survives_a_dead_holder
    --skip cli::exits::acquire_exit_codes_admitted_denied_timeout_never_fits
    --skip cli::views::metrics_are_in_the_prometheus_text_format
    --skip cli::views::watch_count_stops_after_that_many_refreshes
    --skip cli::exits::acquire_waits_like_flock_by_default
    --skip cli::exits::messages_name_commands_the_user_can_run
    --skip hostile::hostile_files_never_panic_crash_hang_or_stall_a_call
    --skip lifecycle::racing_resets_and_removes_never_leave_a_process_on_an_orphaned_file
)

phase_start=$(date +%s)
phase() {
    local now
    now=$(date +%s)
    printf 'aarch64: %s: %d s\n' "$1" $((now - phase_start))
    phase_start=$now
}

# Inside the user namespace: register qemu for aarch64 binaries, then run the suites.
if [ "${1:-}" = "--inside" ]; then
    shift
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    # The ELF header of an aarch64 executable (machine 0xb7), as Debian's qemu-user-binfmt
    # registers it; F: the kernel opens qemu now, so it works in any mount namespace.
    magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    printf ':qemu-aarch64:M::%s:%s:%s:F' "$magic" "$mask" "$HOSTLIMIT_TEST_RUNNER" \
        >/proc/sys/fs/binfmt_misc/register
    for cpu in "$@"; do
        case "$cpu" in
            max | neoverse-v1) expect=casp,ldp ;;
            neoverse-n1 | cortex-a76) expect=casp,casp ;;
            *) expect=ldxp/stxp,ldxp/stxp ;;
        esac
        export QEMU_CPU=$cpu HOSTLIMIT_EXPECT_ATOMICS=$expect
        if [ "$cpu" = max ]; then
            cargo test --release --locked --target "$target" --features cli -- "${skip[@]}"
        else
            cargo test --release --locked --target "$target" --features cli --lib
            cargo test --release --locked --target "$target" --features cli --test main multiprocess::
        fi
        phase "tests under $cpu ($expect)"
    done
    exit 0
fi

[ $# -gt 0 ] || set -- max cortex-a72 neoverse-n1

# Install.
rustup target add "$target" >/dev/null 2>&1
if ! command -v aarch64-linux-gnu-gcc >/dev/null || [ ! -e "$sysroot/lib/libc.so.6" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
fi
if [ ! -x "$tools/qemu-aarch64" ]; then
    # qemu >= 8.1 (LSE2 in its CPU models, 16-byte atomics across processes). Bookworm's own
    # qemu-user is 7.2, so take the static qemu-user of bookworm-backports, from the same
    # mirror as the system's packages, into target/ (nothing is installed system-wide).
    mkdir -p "$tools/apt/lists/partial" "$tools/apt/archives/partial"
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    mirror=$(apt-cache policy | awk -v suite="$codename/main" '$3 == suite { print $2; exit }')
    echo "deb $mirror $codename-backports main" >"$tools/apt/sources.list"
    apt_private=(-o Dir::Etc::sourcelist="$tools/apt/sources.list" -o Dir::Etc::sourceparts=-
        -o Dir::State::Lists="$tools/apt/lists" -o Dir::Cache::archives="$tools/apt/archives"
        -o APT::Sandbox::User=root)
    apt-get -qq "${apt_private[@]}" update
    (cd "$tools" && apt-get -qq "${apt_private[@]}" download qemu-user)
    dpkg-deb --fsys-tarfile "$tools"/qemu-user_*.deb | tar -x -C "$tools" ./usr/bin/qemu-aarch64
    mv "$tools/usr/bin/qemu-aarch64" "$tools/qemu-aarch64"
    rm -rf "$tools/usr" "$tools"/qemu-user_*.deb
fi
"$tools/qemu-aarch64" --version | head -1
phase "install"

# Lints: the x86_64 clippy step never sees src/region/atomic/aarch64.rs.
cargo clippy --locked --target "$target" --all-targets --features cli -- -D warnings
phase "clippy"

# Build (outside the namespace, with the same environment, so the runs only reuse it).
cargo test --release --locked --target "$target" --features cli --no-run
phase "cross build"

# Root in a user namespace that maps every uid and gid to itself (tests switch users), with
# its own mount namespace for binfmt_misc. The maps are written from here, as root (newuidmap
# would refuse ranges that /etc/subuid does not grant); the child waits for them.
unshare --user --mount -- bash -c \
    'until [ -n "$(cat /proc/self/uid_map)" ]; do sleep 0.05; done; exec bash "$0" --inside "$@"' \
    "$script" "$@" &
child=$!
until [ "$(readlink "/proc/$child/ns/user")" != "$(readlink /proc/self/ns/user)" ]; do
    kill -0 "$child"
    sleep 0.05
done
echo "0 0 4294967295" >"/proc/$child/uid_map"
echo "0 0 4294967295" >"/proc/$child/gid_map"
wait "$child"
