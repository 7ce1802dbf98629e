#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time ($1, e.g. 10s).
#
# Go 1.26's fuzz coordinator can report "context deadline exceeded" as a
# failure when -fuzztime expires while a worker is mid-call (go.dev/issue/75804,
# fixed in Go 1.27). That report names no input and writes no reproducer, so a
# run failing that way, and only that way, is run again (twice at most); a run
# that writes a failing input, panics or fails any other way fails at once.
set -euo pipefail
fuzztime="${1:-10s}"
cd "$(dirname "$0")/.."

# deadline_only LOG: the run failed only by the coordinator's deadline race.
deadline_only() {
	grep -qx '    context deadline exceeded' "$1" &&
		! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$1"
}

status=0
passed=0
failed=0
while IFS= read -r pkgdir; do
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkgdir"/*_test.go | sed 's/^func //' | sort -u); do
		echo "fuzz: ./$pkgdir $target ($fuzztime)"
		log="$(mktemp)"
		ok=false
		for try in 1 2 3; do
			if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$pkgdir" >"$log" 2>&1; then
				ok=true
				break
			fi
			if ! deadline_only "$log"; then
				break
			fi
			echo "fuzz: ./$pkgdir $target: try $try ended by the fuzztime deadline race (go.dev/issue/75804), no input failed; running it again"
		done
		if $ok; then
			passed=$((passed + 1))
		else
			cat "$log"
			failed=$((failed + 1))
			status=1
		fi
		rm -f "$log"
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sed 's#^\./##' | sort -u)
echo "fuzz: $passed passed, $failed failed"
exit $status
