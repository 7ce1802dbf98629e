#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a bounded time ($1, e.g. 10s).
set -euo pipefail
fuzztime="${1:-10s}"
cd "$(dirname "$0")/.."
status=0
while IFS= read -r pkgdir; do
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkgdir"/*_test.go | sed 's/^func //' | sort -u); do
		echo "fuzz: ./$pkgdir $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$pkgdir" >/tmp/cci-fuzz.log 2>&1 || { cat /tmp/cci-fuzz.log; status=1; }
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sed 's#^\./##' | sort -u)
exit $status
