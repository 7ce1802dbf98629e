#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time ($1, e.g. 10s).
set -euo pipefail
fuzztime="${1:-10s}"
cd "$(dirname "$0")/.."
status=0
passed=0
failed=0
while IFS= read -r pkgdir; do
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkgdir"/*_test.go | sed 's/^func //' | sort -u); do
		echo "fuzz: ./$pkgdir $target ($fuzztime)"
		log="$(mktemp)"
		if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$pkgdir" >"$log" 2>&1; then
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
