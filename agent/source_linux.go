package agent

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watcher watches the policy directory: inotify for changes as they happen, and a poll of
// file names, sizes, times and inodes as a safety net (and the only source where inotify is
// unavailable). A change is reported once the directory has been quiet for the debounce
// time and no file written since is still open for writing (a writer that truncates and then
// writes must not get its empty or half-written file applied), waiting for writers at most
// maxWriteWait.
type watcher struct {
	dir      string
	poll     time.Duration
	debounce time.Duration
	log      *slog.Logger
}

const maxWriteWait = 2 * time.Second

type fileStamp struct {
	size  int64
	mtime int64
	ino   uint64
}

// scan fingerprints the directory and returns the newest modification time.
func scan(dir string) (map[string]fileStamp, time.Time) {
	out := map[string]fileStamp{}
	var newest time.Time
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !relevantFile(path) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st := fileStamp{size: info.Size(), mtime: info.ModTime().UnixNano()}
		if sys, ok := info.Sys().(*unix.Stat_t); ok {
			st.ino = sys.Ino
		}
		out[path] = st
		if info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		return nil
	})
	return out, newest
}

func sameScan(a, b map[string]fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// inotify is a non-blocking inotify instance watching a directory tree.
type inotify struct {
	fd    int
	paths map[int32]string
}

const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &inotify{fd: fd, paths: map[int32]string{}}, nil
}

// watchTree (re)adds a watch on every directory under dir (adding is idempotent).
func (in *inotify) watchTree(dir string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if wd, err := unix.InotifyAddWatch(in.fd, path, watchMask); err == nil {
			in.paths[int32(wd)] = path
		}
		return nil
	})
}

type fsEvent struct {
	path string
	mask uint32
}

// read drains the pending events.
func (in *inotify) read() (evs []fsEvent, overflow bool) {
	var buf [64 << 10]byte
	for {
		n, err := unix.Read(in.fd, buf[:])
		if err != nil || n <= 0 {
			return evs, overflow
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameLen := int(raw.Len)
			name := ""
			if nameLen > 0 {
				b := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+nameLen]
				for i, c := range b {
					if c == 0 {
						b = b[:i]
						break
					}
				}
				name = string(b)
			}
			if raw.Mask&unix.IN_Q_OVERFLOW != 0 {
				overflow = true
			}
			path := in.paths[raw.Wd]
			if name != "" {
				path = filepath.Join(path, name)
			}
			if raw.Mask&unix.IN_IGNORED != 0 {
				delete(in.paths, raw.Wd)
			}
			evs = append(evs, fsEvent{path: path, mask: raw.Mask})
			off += unix.SizeofInotifyEvent + nameLen
		}
	}
}

func (in *inotify) close() { unix.Close(in.fd) }

// run calls onChange (with the time the change was first seen) for every settled change
// until ctx ends.
func (w *watcher) run(ctx context.Context, onChange func(detected time.Time)) {
	in, err := newInotify()
	if err != nil {
		w.log.Warn("inotify unavailable; polling the policy directory only", "every", w.poll, "error", err)
	} else {
		defer in.close()
		in.watchTree(w.dir)
	}
	last, _ := scan(w.dir)
	lastPoll := time.Now()
	var (
		dirty     bool
		firstSeen time.Time
		lastSeen  time.Time
		writing   = map[string]bool{}
	)
	debounce := w.debounce
	if in == nil {
		debounce += w.poll // polling: settled means one more poll saw no change
	}
	mark := func(at time.Time) {
		if !dirty {
			dirty, firstSeen = true, at
		}
		lastSeen = time.Now()
	}
	for ctx.Err() == nil {
		timeout := w.poll - time.Since(lastPoll)
		if dirty {
			if t := debounce - time.Since(lastSeen); t < timeout {
				timeout = t
			}
		}
		if timeout < time.Millisecond {
			timeout = time.Millisecond
		}
		if timeout > 100*time.Millisecond {
			timeout = 100 * time.Millisecond // to notice ctx
		}
		if in != nil {
			fds := []unix.PollFd{{Fd: int32(in.fd), Events: unix.POLLIN}}
			unix.Poll(fds, int(timeout/time.Millisecond))
			evs, overflow := in.read()
			now := time.Now()
			for _, e := range evs {
				isDir := e.mask&unix.IN_ISDIR != 0
				if !isDir && !relevantFile(e.path) && e.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) == 0 {
					continue
				}
				switch {
				case isDir && e.mask&unix.IN_CREATE != 0:
					// A new directory: watched from now on; files created in it before
					// the watch was added are found by the next poll.
					in.watchTree(e.path)
					continue
				case isDir && e.mask&unix.IN_MOVED_TO != 0:
					in.watchTree(e.path)
				case e.mask&(unix.IN_CREATE|unix.IN_MODIFY) != 0 && !isDir:
					writing[e.path] = true
				case e.mask&(unix.IN_CLOSE_WRITE|unix.IN_DELETE|unix.IN_MOVED_FROM) != 0:
					delete(writing, e.path)
				}
				if e.mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
					in.watchTree(w.dir)
				}
				mark(now)
			}
			if overflow {
				in.watchTree(w.dir)
				mark(now)
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-time.After(timeout):
			}
		}
		if time.Since(lastPoll) >= w.poll {
			lastPoll = time.Now()
			cur, newest := scan(w.dir)
			if !sameScan(cur, last) {
				at := time.Now()
				if in == nil && newest.After(at.Add(-w.poll)) && newest.Before(at) {
					at = newest // found by polling: the write happened at most a poll ago
				}
				if in != nil {
					in.watchTree(w.dir) // a replaced directory, or a missed subdirectory
				}
				mark(at)
			}
		}
		if !dirty || time.Since(lastSeen) < debounce {
			continue
		}
		if len(writing) > 0 && time.Since(lastSeen) < maxWriteWait {
			// A file is still open for writing. Files that vanished do not count.
			for p := range writing {
				if _, err := os.Lstat(p); err != nil {
					delete(writing, p)
				}
			}
			if len(writing) > 0 {
				continue
			}
		}
		clear(writing)
		last, _ = scan(w.dir)
		dirty = false
		onChange(firstSeen)
	}
}
