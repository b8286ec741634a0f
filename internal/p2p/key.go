package p2p

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrBadKey reports a node key file or key that is not a well-formed Ed25519
// libp2p key. LoadOrCreateKey returns it (wrapped) instead of replacing the
// file, because a new key would silently give the node a new peer ID.
var ErrBadKey = errors.New("not a valid Ed25519 libp2p key")

// ErrUnsafeKeyFile reports a node key file that LoadOrCreateKey will not use:
// not a regular file (a symlink, say), or open to group or others. It is
// returned wrapped; the message says what to do.
var ErrUnsafeKeyFile = errors.New("unsafe node key file")

// LoadOrCreateKey reads the node's libp2p private key from path and returns it
// as a stdlib ed25519.PrivateKey. The file holds libp2p's
// crypto.MarshalPrivateKey protobuf encoding of an Ed25519 key, so the peer ID
// it gives is the one any libp2p tool derives from the same file.
//
// When path does not exist a new key is created with mode 0600, atomically:
// the key is written to a temporary file in the same directory, synced,
// renamed into place and the directory synced, so a crash never leaves a
// truncated key behind. The caller is expected to hold the data directory
// (the store's lock), so no other process creates the file concurrently.
//
// A file that exists but does not hold a valid Ed25519 key is an error
// wrapping ErrBadKey; it is never replaced, since that would change the
// node's identity.
//
// An existing path that is not a regular file, or whose mode grants group or
// others any access, is refused with an error wrapping ErrUnsafeKeyFile,
// before it is read; the mode is not changed. Refusing, as OpenSSH does for
// private keys, rather than tightening the mode with a warning: the node
// never creates such a file, so someone or something loosened or copied it,
// and the key (a leader's signs every block, and peers pin it) may already
// have been read. A refusal at startup cannot be missed where a warning can,
// and the fix (chmod 600, named in the error) is the operator's to make
// knowingly. Nor does it follow symlinks, which would let the node's
// identity live wherever the link points. The check is skipped on Windows,
// whose files have no such mode bits.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	raw, err := readKeyFile(path)
	switch {
	case err == nil:
		key, err := decodeKey(raw)
		if err != nil {
			return nil, fmt.Errorf("p2p: load node key %s: %w", path, err)
		}
		return key, nil
	case errors.Is(err, fs.ErrNotExist):
		return createKey(path)
	default:
		return nil, fmt.Errorf("p2p: read node key: %w", err)
	}
}

// readKeyFile reads path if it is a regular file open to its owner only.
// Errors for a missing file wrap fs.ErrNotExist.
func readKeyFile(path string) ([]byte, error) {
	// Lstat before opening: opening a FIFO would block, and open follows
	// symlinks.
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if err := checkKeyFileMode(path, fi); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file opened must be the one checked, not one put in its place since.
	ofi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(fi, ofi) {
		return nil, fmt.Errorf("%w: %s was replaced while being read", ErrUnsafeKeyFile, path)
	}
	if err := checkKeyFileMode(path, ofi); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// checkKeyFileMode refuses anything but a regular file with no group or
// other permission bits.
func checkKeyFileMode(path string, fi fs.FileInfo) error {
	switch t := fi.Mode().Type(); {
	case t&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symlink; put the key file itself there", ErrUnsafeKeyFile, path)
	case t != 0:
		return fmt.Errorf("%w: %s is not a regular file (type %v)", ErrUnsafeKeyFile, path, t)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %#o, open to group or others (want 0600); "+
			"check who may have read the key, then chmod 600 %s", ErrUnsafeKeyFile, path, uint32(perm), path)
	}
	return nil
}

// decodeKey parses a crypto.MarshalPrivateKey protobuf and insists on an
// Ed25519 key whose embedded public half matches its seed: libp2p's decoder
// does not check that, and a mismatch would make signatures fail to verify
// against the peer ID.
func decodeKey(raw []byte) (ed25519.PrivateKey, error) {
	sk, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if _, ok := sk.(*crypto.Ed25519PrivateKey); !ok {
		return nil, fmt.Errorf("%w: key type %s", ErrBadKey, sk.Type())
	}
	b, err := sk.Raw()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if len(b) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: %d key bytes", ErrBadKey, len(b))
	}
	key := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
	if !bytes.Equal(key, b) {
		return nil, fmt.Errorf("%w: public half does not match the seed", ErrBadKey)
	}
	return key, nil
}

func createKey(path string) (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: generate node key: %w", err)
	}
	sk, err := libp2pKey(key)
	if err != nil {
		return nil, err
	}
	raw, err := crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("p2p: encode node key: %w", err)
	}
	if err := writeFileAtomic(path, raw); err != nil {
		return nil, fmt.Errorf("p2p: create node key: %w", err)
	}
	return key, nil
}

// writeFileAtomic puts data at path with mode 0600 such that after a crash
// path either does not exist or holds all of data.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// CreateTemp opens with mode 0600, so the key is never readable by others,
	// not even for a moment.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}

// libp2pKey converts a stdlib key to libp2p's type.
func libp2pKey(key ed25519.PrivateKey) (crypto.PrivKey, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("p2p: private key has %d bytes, want %d: %w", len(key), ed25519.PrivateKeySize, ErrBadKey)
	}
	sk, err := crypto.UnmarshalEd25519PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("p2p: convert private key: %w", err)
	}
	return sk, nil
}

// PeerIDFromPublicKey gives the libp2p peer ID string (base58, "12D3KooW...")
// for an Ed25519 public key. Ed25519 peer IDs are an identity multihash of the
// key, so the result can be turned back with PublicKeyFromPeerID.
func PeerIDFromPublicKey(pub ed25519.PublicKey) (string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("p2p: public key has %d bytes, want %d: %w", len(pub), ed25519.PublicKeySize, ErrBadKey)
	}
	pk, err := crypto.UnmarshalEd25519PublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("p2p: convert public key: %w", err)
	}
	id, err := peer.IDFromPublicKey(pk)
	if err != nil {
		return "", fmt.Errorf("p2p: peer ID from public key: %w", err)
	}
	return id.String(), nil
}

// PublicKeyFromPeerID is the inverse of PeerIDFromPublicKey: it extracts the
// Ed25519 public key embedded in a peer ID. Peer IDs of other key types (which
// hash the key instead of embedding it) are an error.
func PublicKeyFromPeerID(id string) (ed25519.PublicKey, error) {
	pid, err := peer.Decode(id)
	if err != nil {
		return nil, fmt.Errorf("p2p: decode peer ID %q: %w", id, err)
	}
	pk, err := pid.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("p2p: public key from peer ID %q: %w", id, err)
	}
	if _, ok := pk.(*crypto.Ed25519PublicKey); !ok {
		return nil, fmt.Errorf("p2p: peer ID %q holds a %s key: %w", id, pk.Type(), ErrBadKey)
	}
	raw, err := pk.Raw()
	if err != nil {
		return nil, fmt.Errorf("p2p: public key from peer ID %q: %w", id, err)
	}
	return ed25519.PublicKey(raw), nil
}
