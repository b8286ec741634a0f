//go:build !linux

package bench

import (
	"errors"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"
)

// sysProcAttr adds nothing outside Linux: no Pdeathsig there, and the
// benchmark's own interrupt handling stops its nodes.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// peakRSS is only available from Linux's /proc.
func peakRSS(int) (int64, error) { return 0, errors.New("bench: peak RSS needs /proc") }

// cpuTime is only available from Linux's /proc.
func cpuTime(int) (time.Duration, error) { return 0, errors.New("bench: CPU time needs /proc") }

// diskUsage returns the sum of the files' sizes in dir twice: what du
// reports (the blocks allocated) needs Linux here.
func diskUsage(dir string) (allocated, apparent int64, err error) {
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		apparent += fi.Size()
		return nil
	})
	return apparent, apparent, err
}
