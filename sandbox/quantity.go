package sandbox

import (
	"fmt"
	"math/big"
	"strings"
)

// Quantities are parsed exactly (math/big, never floats) from the Kubernetes
// quantity forms the coordinator writes: a decimal number with an optional
// fraction and an optional suffix m, k, M, G, T, P, Ki, Mi, Gi, Ti, Pi.
// Exponent forms (1e3) and signs are refused.

const maxQuantity = int64(1) << 50 // 1 PiB / ~1.1e12 cores: far above any valid pod

var suffixes = map[string]*big.Rat{
	"":   big.NewRat(1, 1),
	"m":  big.NewRat(1, 1000),
	"k":  big.NewRat(1000, 1),
	"M":  big.NewRat(1000_000, 1),
	"G":  big.NewRat(1000_000_000, 1),
	"T":  big.NewRat(1000_000_000_000, 1),
	"P":  big.NewRat(1000_000_000_000_000, 1),
	"Ki": big.NewRat(1<<10, 1),
	"Mi": big.NewRat(1<<20, 1),
	"Gi": big.NewRat(1<<30, 1),
	"Ti": big.NewRat(1<<40, 1),
	"Pi": big.NewRat(1<<50, 1),
}

func parseQuantity(s string) (*big.Rat, error) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, suf := s[:i], s[i:]
	mult, ok := suffixes[suf]
	if !ok || num == "" || num == "." || strings.Count(num, ".") > 1 || len(num) > 30 {
		return nil, fmt.Errorf("quantity %q: want a number with an optional suffix (m, k, M, G, T, P, Ki, Mi, Gi, Ti, Pi)", s)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, fmt.Errorf("quantity %q: bad number", s)
	}
	return r.Mul(r, mult), nil
}

// ceilInt scales r by unit, rounds up and bounds the result.
func ceilInt(s string, r *big.Rat, unit int64) (int64, error) {
	v := new(big.Rat).Mul(r, big.NewRat(unit, 1))
	q, m := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if m.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() || q.Int64() > maxQuantity {
		return 0, fmt.Errorf("quantity %q is too large", s)
	}
	return q.Int64(), nil
}

// ParseBytes parses a memory quantity ("128Mi", "1G", "0.5Gi") into bytes,
// rounding a fractional byte up.
func ParseBytes(s string) (int64, error) {
	r, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	return ceilInt(s, r, 1)
}

// ParseMilliCPU parses a CPU quantity ("250m", "0.5", "2") into millicores,
// rounding a fractional millicore up.
func ParseMilliCPU(s string) (int64, error) {
	r, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	return ceilInt(s, r, 1000)
}
