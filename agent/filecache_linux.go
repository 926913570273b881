package agent

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/netward/netward/api"
)

// decodedFile is one manifest file as last decoded, keyed by its content.
type decodedFile struct {
	sum  [32]byte
	objs *api.Objects
	errs []error
}

// loadDir reads the policy directory like api.Load, but decodes only the files whose content
// changed since the last read: on a large directory (a thousand Pods and a few policies) a
// one-file edit then costs one file's decoding. It returns the objects, the decoding errors
// and a digest of every file's name and content.
func (a *Agent) loadDir(dir string) (*api.Objects, []error, [32]byte, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && relevantFile(path) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, nil, [32]byte{}, err
	}
	sort.Strings(files)
	h := sha256.New()
	objs := &api.Objects{}
	var errs []error
	seen := make(map[string]bool, len(files))
	if a.files == nil {
		a.files = map[string]decodedFile{}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, [32]byte{}, err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
		sum := sha256.Sum256(b)
		seen[f] = true
		df, ok := a.files[f]
		if !ok || df.sum != sum {
			o, e := api.LoadBytes(f, b)
			df = decodedFile{sum: sum, objs: o, errs: e}
			a.files[f] = df
		}
		objs.Append(df.objs)
		errs = append(errs, df.errs...)
	}
	for f := range a.files {
		if !seen[f] {
			delete(a.files, f)
		}
	}
	var digest [32]byte
	copy(digest[:], h.Sum(nil))
	return objs, errs, digest, nil
}
