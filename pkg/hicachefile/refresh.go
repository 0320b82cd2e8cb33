//go:build linux

package hicachefile

import (
	"errors"
	"os"
	"slices"
	"time"

	"github.com/hicache-go/hicache/pkg/hicachefile/internal/batchfile"
	"github.com/hicache-go/hicache/pkg/hicachefile/internal/dirwatch"
	"golang.org/x/sys/unix"
)

// refresh brings the index up to date with the V1 directory, as cheaply as
// it can, and reports whether the index may have changed. miss says that a
// lookup just missed, which justifies more work.
//
// With a watcher, pending inotify events are applied: batch files renamed
// or written in are loaded, files removed are forgotten. That costs one
// read(2) when nothing happened. The directory is listed in full only before
// the first lookup, after Clear, after the kernel dropped events, and after
// checkDir found a directory replaced (which the watcher's events on Dir
// call for, or, without a watcher, a miss). When the store
// polls (no inotify, or a network file system whose other clients raise no
// event here), a miss lists the directory again if its mtime changed since
// the last listing, or if that listing started Config.PollInterval ago or
// more: a network file system's client caches the directory's attributes
// (GlusterFS's FUSE client for about a second), so its mtime may lag the
// names a listing shows. Callers that miss at once share one listing: they
// queue on s.scan.mu, and the ones behind find the listing fresh. A miss also retries the files whose index could not be
// read for a reason other than corruption.
//
// BatchGetV1 does not call it for pages it finds: reading a page checks
// everything a refresh would (a file gone fails its open, a key its entry;
// files are opened by path, so a Dir moved, removed or swapped fails the
// open too), so a read that hits makes no system call beyond its reads.
func (s *Store) refresh(miss bool) bool {
	x := &s.scan
	x.mu.Lock()
	defer x.mu.Unlock()

	changed := false
	if s.watch != nil {
		changed = s.applyEvents()
	}
	// Dir or the V1 directory replaced: a watcher says so; without one, or
	// on a network file system, a miss checks; so does a read that found
	// an indexed file gone from the path (dirCheck), which a directory
	// replaced in a way no watch sees (a parent of Dir swapped, a mount)
	// shows first.
	check := s.dirCheck.Swap(false)
	if s.dirsMoved || check || (miss && (s.watch == nil || s.poll.Load())) {
		s.dirsMoved = false
		changed = s.checkDir() || changed
	}
	full, retry := !x.scanned, miss && len(x.pending) > 0
	if !full && miss && s.poll.Load() {
		if iv := s.cfg.PollInterval; iv > 0 && time.Since(x.at) >= iv {
			full = true
		} else {
			var st unix.Stat_t
			if err := unix.Fstat(s.v1fd(), &st); err != nil {
				s.stats.errors.Add(1)
			} else {
				full = st.Mtim != x.mtime
			}
		}
	}
	switch {
	case full:
		return s.listDir(nil) || changed
	case retry:
		names := make([]string, 0, len(x.pending))
		for n := range x.pending {
			names = append(names, n)
		}
		s.merge(s.load(names))
		return true
	}
	return changed
}

// checkDir reopens Dir and the V1 directory when the ones the store holds
// open were removed or replaced under it (an operator's rm -rf, a mv and
// mkdir): otherwise writes would go on failing into a dead directory, or
// land in the moved one, and files other stores write at the path would
// never be seen. It creates a directory that is missing. It costs a stat of
// each path, so it runs only when the watcher saw a directory go, or,
// without a watcher, on misses and once per write call, never per key. It
// reports whether it reopened. The caller holds s.scan.mu.
func (s *Store) checkDir() bool {
	topMoved := !s.topID.isAt(s.dir)
	if !topMoved && s.v1ID.isAt(s.v1Dir) {
		return false
	}
	if topMoved {
		nfd, id, err := openDir(s.dir)
		if err != nil {
			s.stats.errors.Add(1)
			return false
		}
		s.retire(int(s.top.Swap(int64(nfd))))
		s.topID = id
		// The old-format files it tracked were in the old directory.
		s.lru.ForgetAll(true)
		if s.lru.On() {
			_ = s.trackOldFiles()
		}
	}
	nfd, id, err := openDir(s.v1Dir)
	if err != nil {
		s.stats.errors.Add(1)
		return topMoved
	}
	if s.cfg.Sync {
		_ = unix.Fsync(s.topfd())
	}
	s.retire(int(s.v1.Swap(int64(nfd))))
	s.v1ID = id
	if s.watch != nil && s.watch.Rewatch(s.v1Dir, s.dir) != nil {
		_ = s.watch.Close()
		s.watch = nil
	}
	if s.watch == nil && !s.cfg.NoWatch {
		s.watch, _ = dirwatch.New(s.v1Dir, s.dir)
	}
	s.poll.Store(s.watch == nil || dirwatch.IsNetworkFS(nfd))
	s.scan.reset(s.idx) // everything it knew was in the old directory
	s.lru.ForgetAll(false)
	return true
}

// followDir runs checkDir for a write call (of either interface), once per
// call, so that its files land in the directory now at Dir: with a
// watcher, only when its events say a directory went.
func (s *Store) followDir() {
	s.scan.mu.Lock()
	defer s.scan.mu.Unlock()
	if s.watch != nil && !s.poll.Load() {
		s.applyEvents()
		if !s.dirsMoved {
			return
		}
	}
	s.dirsMoved = false
	s.checkDir()
}

// applyEvents applies the watcher's pending events to the index. The caller
// holds s.scan.mu.
func (s *Store) applyEvents() bool {
	var gone, fresh []string
	// created holds the names created (not renamed) in, not closed since:
	// a file being written in place (cp) is not skipped as bad when read
	// before its close, whose event loads it again.
	var created map[string]bool
	overflow, lost := s.watch.Drain(func(name string, ev dirwatch.Event) {
		if ev != dirwatch.Dirs && !s.isBatchName(name) {
			return
		}
		switch ev {
		case dirwatch.Gone:
			s.dropOwn(name)
			gone = append(gone, name)
		case dirwatch.Appeared, dirwatch.Created, dirwatch.Written:
			if ev == dirwatch.Created {
				if created == nil {
					created = make(map[string]bool)
				}
				created[name] = true
			} else {
				delete(created, name)
			}
			if ev != dirwatch.Written && s.takeOwn(name) {
				// The link of this store's own unnamed file: known, or
				// being committed. (Another file put under the name while
				// that commit is in flight makes it forget the name.)
				return
			}
			// A file linked or renamed in, or created or written in place
			// (a foreign writer's), that the index does not know, or
			// another file under a name it knows (another store's renamed
			// over it: another inode). This store's own renamed files,
			// whose rename and close also raise these events, are known by
			// then, or being committed (inflight), and are not read again.
			// A file created in place and read before its close is not
			// kept when it fails its checks (created), and is read again
			// when closed. A file rewritten in place (same inode)
			// is caught when read: its trailer checksum, key or CRC
			// checks fail.
			if !s.isInflight(name) && !s.knownFile(name, ev == dirwatch.Written) {
				fresh = append(fresh, name)
			}
		case dirwatch.Dirs:
			s.dirsMoved = true
		}
	})
	if lost {
		_ = s.watch.Close()
		s.watch = nil
		s.poll.Store(true)
		// A polling store tells another file put under a name it knows
		// by the inode (verifyFiles), which the files this store linked
		// while it watched lack: they are forgotten, and the listing
		// that follows loads them again, with theirs.
		var names []string
		s.idx.Files(func(name string) { names = append(names, name) })
		for _, n := range names {
			if meta, ok := s.idx.MetaOf(n); ok && meta.Ino == 0 && meta.Size > 0 {
				s.forgetBatch(n)
			}
		}
	}
	if overflow || lost {
		s.scan.scanned = false
	}
	if overflow || lost || s.dirsMoved {
		// The events still expected never come: dropped, or raised in a
		// directory that checkDir, next, stops watching (every link in
		// flight goes to the directory the call began with).
		s.forgetOwn()
	}
	for _, n := range gone {
		if !s.goneInFlight(n) {
			s.forgetBatch(n)
		}
		delete(s.scan.pending, n)
	}
	// A name created, written and closed in one drain is read once.
	slices.Sort(fresh)
	got := s.load(slices.Compact(fresh))
	for i, f := range got.fails {
		if created[f.name] && errors.Is(f.err, ErrCorrupt) {
			// Maybe still being written: forgotten, not counted as
			// skipped. Its close, or a listing, reads it again.
			got.fails[i].err = os.ErrNotExist
		}
	}
	s.merge(got)
	return len(gone) > 0 || len(fresh) > 0
}

// knownFile reports whether the index holds the batch file name as the
// file now on disk, with one fstatat: the same inode and, after a write in
// place (inPlace), the same size and trailer checksum too, which another
// batch written over the file in place changes. A file that is gone is
// known: its removal event follows. A file this store linked with no inode
// recorded is known without a stat after a write in place (its own close
// raises one; loading it again would bring back the entries its reads
// found bad and dropped): a rewrite of it in place is caught when read,
// and reloaded then (reloadBatch).
func (s *Store) knownFile(name string, inPlace bool) bool {
	meta, ok := s.idx.MetaOf(name)
	if !ok {
		return false
	}
	if inPlace && meta.Ino == 0 && meta.Size > 0 {
		return true // not a file that failed its checks (no size recorded): one of this store's
	}
	var st unix.Stat_t
	if err := unix.Fstatat(s.v1fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return true
	}
	if st.Ino != meta.Ino {
		return false
	}
	if !inPlace || meta.Size == 0 {
		return true // a file that failed its checks stays skipped until replaced
	}
	return st.Size == meta.Size && s.tagAt(name, st.Size) == meta.Tag
}

// tagAt returns the trailer checksum of the batch file name of size bytes:
// its last four bytes, or 0 when they cannot be read.
func (s *Store) tagAt(name string, size int64) uint32 {
	if size < 4 {
		return 0
	}
	fd, _, err := s.openRegular(s.v1fd(), s.v1Dir, name)
	if err != nil {
		return 0
	}
	defer s.sys.Close(fd)
	var b [4]byte
	if s.sys.preadv(fd, [][]byte{b[:]}, size-4) != nil {
		return 0
	}
	return batchfile.Tag(b[:])
}

// reloadBatch has the index of the batch file name read again at the next
// refresh after a miss, as BatchGetV1 makes when a copy proves bad: a read
// found the file other than the one indexed (another size, or another
// trailer checksum), as when another batch was written over it in place.
// The index forgets the file until then, as it does a file whose index
// could not be read; the reload brings back what the file now holds,
// checked as any file loaded.
func (s *Store) reloadBatch(name string) {
	s.scan.mu.Lock()
	s.idx.Forget(name)
	s.scan.pending[name] = true
	s.scan.mu.Unlock()
}

// listDir lists the V1 directory, loads the batch files the index does not
// know, and forgets the ones that are gone. It calls other, when not nil,
// with every name that is not a batch file of this store. It reports
// whether the listing succeeded. The caller holds s.scan.mu.
func (s *Store) listDir(other func(name string)) bool {
	x := &s.scan
	at := time.Now()
	var st unix.Stat_t
	if err := unix.Fstat(s.v1fd(), &st); err != nil {
		s.stats.errors.Add(1)
		return false
	}
	// Only files indexed before the listing can be gone when the listing
	// lacks them: this store's writes rename a file into place before
	// adding it, so one added later may simply be newer than the listing.
	var known, present map[string]bool
	s.idx.Files(func(name string) {
		if known == nil {
			known = make(map[string]bool)
			present = make(map[string]bool)
		}
		known[name] = true
	})
	if known == nil {
		// An empty index (New, or after Clear): make room at once for the
		// files the listing is about to add, and a key each (a batch file
		// holds one at least), instead of growing the index's tables a
		// doubling at a time as they come.
		n := dirEntries(s.v1fd(), st.Size)
		s.idx.Grow(n, n)
	}
	// The workers load the files of each getdents buffer while the next
	// is read.
	l := s.newLoader()
	err := readDirChunksAt(s.v1fd(), func(names []string) {
		fresh := names[:0]
		for _, n := range names {
			if !s.isBatchName(n) {
				if other != nil {
					other(n)
				}
				continue
			}
			if present != nil {
				present[n] = true
			}
			fresh = append(fresh, n)
		}
		fresh = s.idx.Unknown(fresh) // pending files are not in the index
		if len(x.pending) > 0 {
			for _, n := range fresh {
				delete(x.pending, n) // merge adds back the ones that fail
			}
		}
		l.add(fresh)
	})
	fails := l.wait()
	if err != nil {
		// What was loaded stays; the next refresh lists again.
		s.stats.errors.Add(1)
		if isFDLimit(err) {
			x.fdErr = err
		}
		s.merge(&loadedSet{fails: fails})
		return false
	}
	s.stats.listings.Add(1)
	for name := range known {
		if !present[name] {
			s.forgetBatch(name)
		}
	}
	x.mtime, x.at = st.Mtim, at
	x.scanned = true
	s.merge(&loadedSet{fails: fails})
	return true
}

// dirEntries estimates, from its size in bytes (st_size), how many entries
// the directory open at fd holds. tmpfs counts 20 bytes an entry. A disk
// file system's size is that of its directory blocks, in which each of
// the store's names (about 70 bytes) takes 80 bytes and more: 128 a name
// errs low, which costs a table growth, not memory. An estimate is never
// more than maxDirEntries.
func dirEntries(fd int, size int64) int {
	var fs unix.Statfs_t
	per := int64(128)
	if unix.Fstatfs(fd, &fs) == nil && fs.Type == unix.TMPFS_MAGIC {
		per = 20
	}
	return int(min(size/per, maxDirEntries))
}

// maxDirEntries bounds dirEntries: an index is made ready for at most this
// many files at once.
const maxDirEntries = 1 << 22
