package main

import (
	"errors"
	"flag"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kimura-ledger/kimura/internal/api"
)

// decimal is a number flag read as plain decimal digits, the way the HTTP
// API reads numbers. The flag package's own number flags take "010" as
// octal 8 and "0x10" as 16, so a zero-padded nonce would sign another
// message than meant, and a zero-padded height fetch another block.
type decimal[T ~int | ~int64 | ~uint64] struct{ p *T }

// decimalVar defines a decimal flag with a default value.
func decimalVar[T ~int | ~int64 | ~uint64](fs *flag.FlagSet, p *T, name string, value T, usage string) {
	*p = value
	fs.Var(decimal[T]{p}, name, usage)
}

func (d decimal[T]) String() string {
	if d.p == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(*d.p), 10)
}

func (d decimal[T]) Set(s string) error {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return errors.New("want decimal digits")
	}
	v, err := strconv.ParseUint(s, 10, 64)
	t := T(v)
	if err != nil || t < 0 || uint64(t) != v {
		return errors.New("out of range")
	}
	*d.p = t
	return nil
}

// rpcFlag defines a tool's --rpc flag.
func rpcFlag(fs *flag.FlagSet) *string {
	return fs.String("rpc", defaultRPC, "node URL")
}

// checkRPC refuses an --rpc that cannot be a node's URL, before any
// request: a bad command line (exit 2), not a failed request.
func checkRPC(rpc string) error {
	if err := api.CheckNodeURL(rpc); err != nil {
		return usagef("--rpc %v", err)
	}
	return nil
}

// checkContent refuses --content that is not UTF-8: signed as it is, it
// would reach the node rewritten by JSON and fail its signature there.
func checkContent(content string) error {
	if !utf8.ValidString(content) {
		return usagef("--content is not valid UTF-8")
	}
	return nil
}
