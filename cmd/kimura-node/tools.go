package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/node"
	"github.com/kimura-ledger/kimura/internal/store"
)

const defaultRPC = "http://127.0.0.1:8545"

// Sender key file: the Ed25519 seed, 64 hex characters, and a newline.

func keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	path := fs.String("key", "", "file to write the new sender key to")
	if err := parse(fs, args); err != nil {
		return exitCode(stderr, "kimura-node keygen", err)
	}
	if *path == "" {
		return exitCode(stderr, "kimura-node keygen", usagef("--key FILE is required"))
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return exitCode(stderr, "kimura-node keygen", err)
	}
	f, err := os.OpenFile(*path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return exitCode(stderr, "kimura-node keygen", fmt.Errorf("create key file: %w", err))
	}
	_, err = fmt.Fprintln(f, hex.EncodeToString(priv.Seed()))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(*path)
		return exitCode(stderr, "kimura-node keygen", fmt.Errorf("write key file: %w", err))
	}
	_, err = fmt.Fprintln(stdout, hex.EncodeToString(pub))
	return printed(stderr, "kimura-node keygen", err)
}

func readSenderKey(path string) (ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("key file %s: want %d hex characters (made by keygen)", path, 2*ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func submit(args []string, stdout, stderr io.Writer) int {
	const prog = "kimura-node submit"
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	keyPath := fs.String("key", "", "sender key file")
	content := fs.String("content", "", "message text")
	var nonce uint64
	decimalVar(fs, &nonce, "nonce", 0, "nonce `N`; default: the current time in nanoseconds")
	rpc := rpcFlag(fs)
	if err := parse(fs, args); err != nil {
		return exitCode(stderr, prog, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *keyPath == "" || !set["content"] {
		return exitCode(stderr, prog, usagef("--key FILE and --content TEXT are required"))
	}
	if err := errors.Join(checkRPC(*rpc), checkContent(*content)); err != nil {
		return exitCode(stderr, prog, err)
	}
	if !set["nonce"] {
		nonce = uint64(time.Now().UnixNano())
	}
	key, err := readSenderKey(*keyPath)
	if err != nil {
		return exitCode(stderr, prog, err)
	}
	m := chain.SignMessage(key, nonce, *content)
	ctx, cancel := toolContext()
	defer cancel()
	a, err := api.NewClient(*rpc).Submit(ctx, &m)
	if err != nil {
		return exitCode(stderr, prog, err)
	}
	_, err = fmt.Fprintln(stdout, a.ID)
	return printed(stderr, prog, err)
}

func query(args []string, stdout, stderr io.Writer) int {
	const (
		prog  = "kimura-node query"
		whats = "height, hash, latest, block --height N, message --id ID"
	)
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	rpc := rpcFlag(fs)
	var height uint64
	decimalVar(fs, &height, "height", 0, "block height `N`")
	idHex := fs.String("id", "", "message ID")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		var help helpRequest
		if len(args) > 0 && errors.As(parse(fs, args[:1]), &help) { // query -h
			help.flags = "kimura-node query WHAT [flags], WHAT one of: " + whats + "\n" + help.flags
			return exitCode(stderr, prog, help)
		}
		return exitCode(stderr, prog, usagef("want one of: %s", whats))
	}
	what := args[0]
	if err := parse(fs, args[1:]); err != nil {
		return exitCode(stderr, prog, err)
	}
	if err := checkRPC(*rpc); err != nil {
		return exitCode(stderr, prog, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c := api.NewClient(*rpc)
	ctx, cancel := toolContext()
	defer cancel()
	var out any
	var err error
	switch what {
	case "height", "hash":
		var h api.Height
		if h, err = c.Height(ctx); err == nil {
			if what == "height" {
				_, err = fmt.Fprintln(stdout, h.Height)
			} else {
				_, err = fmt.Fprintln(stdout, h.Hash)
			}
			return printed(stderr, prog, err)
		}
	case "latest":
		out, err = c.Latest(ctx)
	case "block":
		if !set["height"] {
			return exitCode(stderr, prog, usagef("query block needs --height N"))
		}
		out, err = c.Block(ctx, height, false)
	case "message":
		id, perr := chain.ParseHash(*idHex)
		if perr != nil {
			return exitCode(stderr, prog, usagef("--id: %v", perr))
		}
		out, err = c.Message(ctx, id)
	default:
		return exitCode(stderr, prog, usagef("unknown query %q: want height, hash, latest, block or message", what))
	}
	if err != nil {
		return exitCode(stderr, prog, err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return printed(stderr, prog, enc.Encode(out))
}

// printed is the exit code of a tool whose answer was written to stdout
// with the result err: 1 when the answer could not be written (a full
// disk, a closed pipe), so a script never takes a missing answer for one.
func printed(stderr io.Writer, prog string, err error) int {
	if err != nil {
		return exitCode(stderr, prog, fmt.Errorf("write the answer: %w", err))
	}
	return exitOK
}

func verify(args []string, stdout, stderr io.Writer) int {
	const prog = "kimura-node verify"
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	dbPath := fs.String("db-path", "./kimura-data", "data directory of a stopped node")
	if err := parse(fs, args); err != nil {
		return exitCode(stderr, prog, err)
	}
	st, err := store.OpenExisting(node.ChainDir(*dbPath), nil)
	if err != nil {
		return exitCode(stderr, prog, err)
	}
	defer st.Close()
	ctx, stop := signalContext() // the scan is local: no deadline
	defer stop()
	n, err := st.VerifyChain(ctx, func(p store.Progress) {
		fmt.Fprintf(stderr, "Verifying chain: %d of %d blocks\n", p.Done, p.Total)
	})
	if err != nil {
		return exitCode(stderr, prog, err)
	}
	_, err = fmt.Fprintf(stdout, "Chain integrity verified: %d blocks\n", n)
	return printed(stderr, prog, err)
}
